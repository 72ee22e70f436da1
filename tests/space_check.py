"""The Space as Hugging Face would run it: `tests/run.sh` runs this after tests/browser_check.py, with Playwright
from `.venv-browser` and Debian's Chromium.

- `pet_breeds_export RUN/model --space DIR` (the README's install, `.venv`) writes the folder;
- a venv of its own, `.venv-space`, holds only DIR/requirements.txt (made again when the requirements change, else
  reused, as run.sh reuses .venv); `torch`, `fastai` and `pet_breeds` are not importable there;
- `python app.py` in DIR, on 127.0.0.1 (GRADIO_SERVER_NAME and GRADIO_SERVER_PORT, as a Space sets them; no
  analytics, no share link): its cold start is the time to its first HTTP 200;
- in Chromium, a real photo uploaded through the page's file input: the top class and the probabilities the page
  shows are `pet_breeds_predict`'s on the same photo (PyTorch, fp32), within the export's tolerance; the time
  from the upload to the answer is one prediction's latency; a file that is no image is an error message in the page;
- the same app through `gradio_client` (from the Space's venv), as another program calls a Space.

    .venv-browser/bin/python tests/space_check.py RUN     # RUN: the README main job's output (readme_install.py's OUT)
    PET_BREEDS_UPDATE_SCREENSHOT=1 ...                  # also copy the page's screenshot to docs/images/space.png

Prints the measured times, then 'space_check: N passed, N failed'. Needs only the standard library and Playwright."""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from readme_install import check, free_port, stop_group   # standard library only, like this script

ROOT = Path(__file__).resolve().parents[1]
APP_BIN = ROOT/'.venv'/'bin'           # the README's environment: the export and the predictor run from there
SPACE_VENV = ROOT/'.venv-space'        # only the Space's requirements.txt
PHOTOS = ROOT/'nbs'/'images'/'pets'
SHOT = ROOT/'docs'/'images'/'space.png'   # written only with PET_BREEDS_UPDATE_SCREENSHOT=1, as browser_check's widget.png
CAT, DOG = PHOTOS/'Bengal_1.jpg', PHOTOS/'american_bulldog_10.jpg'   # not in the bundled sample the main job trains on
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run', '--disable-sync']
START_TIMEOUT = 120
FP32_TOL = 1e-4   # export_onnx's own check: onnxruntime against PyTorch

def run(*args, timeout=600, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    check(r.returncode == 0, f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r

def space_venv(reqs:Path) -> Path:
    "`.venv-space` holding only `reqs`: reused while its requirements are the same, else made again from nothing."
    stamp = SPACE_VENV/'space-requirements.txt'
    if (SPACE_VENV/'bin'/'python').exists() and stamp.exists() and stamp.read_text() == reqs.read_text(): return SPACE_VENV
    shutil.rmtree(SPACE_VENV, ignore_errors=True)
    run(sys.executable, '-m', 'venv', SPACE_VENV)   # venv builds on the base interpreter, not on .venv-browser
    run(SPACE_VENV/'bin'/'pip', 'install', '-q', '-r', reqs, timeout=900)
    shutil.copyfile(reqs, stamp)
    (SPACE_VENV/'.gitignore').write_text('*\n')   # as Python 3.13's venv writes: git ignores the folder
    return SPACE_VENV

def predicted(model:Path, photos) -> dict:
    "`pet_breeds_predict` on `photos` with PyTorch in fp32, no TTA: each photo's `[[label, probability], ...]`, best first."
    r = run(APP_BIN/'pet_breeds_predict', model, *photos, '--json', '--k', '3', '--precision', 'fp32', '--no_tta')
    return dict(zip(photos, (json.loads(l)['top'] for l in r.stdout.splitlines())))

def tolerance(space:Path) -> float:
    "The probabilities' tolerance for the model file the Space runs: fp32's, or the int8 model's recorded difference."
    meta = json.loads((space/'model.json').read_text())
    q = meta.get('onnx_int8') or {}
    return FP32_TOL + (q['max_abs_diff'] if q.get('file') and (space/q['file']).exists() else 0)

def close(got, want, tol, what):
    check([l for l, _ in got][:1] == [l for l, _ in want][:1], f"{what}: top class {got[:1]}, pet_breeds_predict says {want[:1]}")
    for (l, p), (wl, wp) in zip(got, want):
        check(l == wl and abs(p - wp) <= tol, f"{what}: {got} against pet_breeds_predict's {want} (tolerance {tol:.2g})")

class App:
    "`python app.py` in the Space's folder, with the Space's venv, in its own process group; stopped on exit."
    def __init__(self, space:Path, venv:Path, log:Path):
        self.port, self.log = free_port(), log
        self.url = f'http://127.0.0.1:{self.port}/'
        env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
        env.update(GRADIO_SERVER_NAME='127.0.0.1', GRADIO_SERVER_PORT=str(self.port), GRADIO_ANALYTICS_ENABLED='False',
                   HF_HUB_OFFLINE='1', HF_HUB_DISABLE_TELEMETRY='1', PATH=f"{venv/'bin'}:{env.get('PATH', '')}")
        self.t0 = time.monotonic()
        with open(log, 'w') as out:
            self.proc = subprocess.Popen([str(venv/'bin'/'python'), 'app.py'], cwd=space, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env)
    def wait_ready(self) -> float:
        "Seconds from the start of `python app.py` to its first HTTP 200 (the cold start)."
        while time.monotonic() - self.t0 < START_TIMEOUT:
            check(self.proc.poll() is None, f"app.py exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200: return time.monotonic() - self.t0
            except OSError: time.sleep(0.1)
        raise AssertionError(f"app.py was not ready after {START_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")
    def __enter__(self): return self
    def __exit__(self, *exc): stop_group(self.proc)

def upload(page, photo:Path, top:str) -> tuple:
    "Upload `photo` through the page's file input; `(seconds to the answer, [[label, probability], ...])` the page shows."
    from playwright.sync_api import expect
    t = time.monotonic()
    page.locator('input[type=file]').first.set_input_files(str(photo))
    expect(page.locator('[data-testid="label-output-value"]')).to_have_text(top, timeout=60_000)
    seconds = time.monotonic() - t
    rows = page.locator('.confidence-set').evaluate_all(
        "els => els.map(e => [e.querySelector('dt').textContent.trim(), parseFloat(e.querySelector('meter').getAttribute('value'))])")
    return seconds, rows

CLIENT = """
import json, sys, time
from gradio_client import Client, handle_file
t = time.monotonic()
client = Client(sys.argv[1], verbose=False)
t1 = time.monotonic()
out = client.predict(handle_file(sys.argv[2]), api_name='/predict')
print(json.dumps({'connect': t1 - t, 'predict': time.monotonic() - t1, 'out': out}))
"""

def main():
    from playwright.sync_api import sync_playwright, expect
    run_dir = Path(sys.argv[1]).resolve()
    model = run_dir/'model'
    check((model/'model.json').is_file(), f"{model} is not an exported model: run tests/readme_install.py {run_dir} first")
    exe = shutil.which('chromium')
    check(exe is not None, "Chromium not found: install Debian's with `apt-get install -y chromium`")
    tmp = Path(tempfile.mkdtemp(prefix='space_check_'))
    space, times, passed, failed = tmp/'space', {}, 0, 0
    def step(name, f):
        nonlocal passed, failed
        t = time.monotonic()
        try: f(); passed += 1; print(f"ok   {name} ({time.monotonic() - t:.0f} s)", flush=True); return True
        except Exception as e: failed += 1; print(f"FAIL {name} ({time.monotonic() - t:.0f} s): {e}", flush=True); return False

    def export():
        before = sorted(p.name for p in model.iterdir())
        run(APP_BIN/'pet_breeds_export', model, '--space', space)
        check(sorted(p.name for p in model.iterdir()) == before, f"the export wrote beside the model: {sorted(model.iterdir())}")
    def venv():
        t = time.monotonic()
        space_venv(space/'requirements.txt')
        times['venv'] = time.monotonic() - t
        r = subprocess.run([str(SPACE_VENV/'bin'/'python'), '-c', "import importlib.util as u\n"
                            "print(' '.join(m for m in ('torch', 'fastai', 'pet_breeds') if u.find_spec(m)))"],
                           capture_output=True, text=True, cwd=tmp, env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
        check(r.returncode == 0 and r.stdout.strip() == '', f"importable in the Space's venv: {r.stdout.strip()} {r.stderr[-1000:]}")
    if not (step('pet_breeds_export --space', export) and step("the Space's venv (requirements.txt only, no torch)", venv)):
        print(f"space_check: {passed} passed, {failed} failed"); sys.exit(1)

    want = predicted(model, [CAT, DOG])
    tol = tolerance(space)
    with App(space, SPACE_VENV, tmp/'app.log') as app:
        def start(): times['cold_start'] = app.wait_ready()
        def browser():
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
                try:
                    page = b.new_page(viewport={'width': 1000, 'height': 900})
                    page.route(lambda url: not url.startswith(app.url), lambda route: route.abort())   # offline
                    page.goto(app.url, wait_until='domcontentloaded', timeout=START_TIMEOUT * 1000)
                    expect(page.get_by_text('Measured accuracy:')).to_be_visible(timeout=30_000)
                    for p, key in ((CAT, 'first_prediction'), (DOG, 'next_prediction')):
                        times[key], rows = upload(page, p, want[p][0][0])
                        close(rows, want[p], tol, f"the page on {p.name}")
                    page.screenshot(path=str(tmp/'space.png'), full_page=True)
                    if os.environ.get('PET_BREEDS_UPDATE_SCREENSHOT') == '1':
                        shutil.copyfile(tmp/'space.png', SHOT)
                        print(f'updated {SHOT.relative_to(ROOT)} (rebuild the docs: .venv/bin/python docs/build.py)')
                    notes = tmp/'notes.jpg'
                    notes.write_text('plain text, not a picture\n')
                    page.locator('input[type=file]').first.set_input_files(str(notes))
                    expect(page.get_by_text('notes.jpg: not an image file').first).to_be_visible(timeout=30_000)
                finally: b.close()
        def client():
            r = run(SPACE_VENV/'bin'/'python', '-c', CLIENT, app.url, CAT, cwd=tmp, timeout=120)
            res = json.loads(r.stdout.splitlines()[-1])
            times['client_predict'] = res['predict']
            got = [[c['label'], c['confidence']] for c in res['out']['confidences']]
            check(res['out']['label'] == want[CAT][0][0], f"gradio_client: {res['out']}")
            close(got, want[CAT], tol, 'gradio_client')
        if step('python app.py answers', start):
            step('upload in Chromium: the top class and probabilities of pet_breeds_predict', browser)
            step('gradio_client', client)
    fmt = lambda k: f"{times[k]:.2f} s" if k in times else 'not measured'
    size = sum(p.stat().st_size for p in space.rglob('*') if p.is_file()) / 1e6
    print(f"space_check: folder {size:.1f} MB; venv {fmt('venv')} (0 when reused); cold start {fmt('cold_start')} "
          f"(python app.py to HTTP 200); prediction in the page {fmt('first_prediction')} (first), {fmt('next_prediction')} "
          f"(next); gradio_client {fmt('client_predict')}; screenshot {tmp/'space.png'}", flush=True)
    print(f"space_check: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
