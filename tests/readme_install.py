"""The README's install alone: `tests/run.sh` runs this right after the README's first install command
(`pip install -e .`) and the README's Jupyter command (`pip install jupyterlab`), before the dev
requirements go in, so a package that only the tests install cannot hide a broken command.

It checks, with the standard library and the package only:
- every console script starts (`--help`; those the checks below and tests/browser_check.py run for real are
  left to them);
- the README's main job, `pet_breeds_train --out DIR` offline: a real pretrained 37-breed model from the
  bundled sample, its report, and predictions on held-back photos;
- `pet_breeds_predict` on that model tells a cat from a dog among the committed photos;
- a notebook runs under the Jupyter the README tells users to install (`jupyter nbconvert --execute`).

    .venv/bin/python tests/readme_install.py OUT     # OUT: where the main job's run goes (kept for pytest)

The model in OUT/model is then used by tests/browser_check.py: `pet_breeds_app` from this install serves it,
answers `GET /` with HTTP 200 and predicts uploads in Chromium. Not collected by
pytest (the name does not start with `test_`). Ends with 'N passed, N failed'."""
import csv, json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PHOTOS = ROOT/'nbs'/'images'/'pets'
# run for real below (train, sample, predict) or by tests/browser_check.py (app); settings.ini lists them all
RUN_ELSEWHERE = ['pet_breeds_train', 'pet_breeds_sample', 'pet_breeds_predict', 'pet_breeds_app']
SCRIPTS = ['pet_breeds', 'pet_breeds_export', 'pet_breeds_interpret', 'pet_breeds_imagenet', 'pet_breeds_sort',
           'pet_breeds_bench', 'pet_breeds_audit', 'pet_breeds_clean', 'pet_breeds_undo']
DEAD = 'http://127.0.0.1:9'                     # every download fails at once, network or not
OFFLINE = dict(PET_BREEDS_DATA='', HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD, http_proxy=DEAD, https_proxy=DEAD, NO_PROXY='', no_proxy='')

def run(*args, env=None, timeout=900, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)

def check(cond, what):
    if not cond: raise AssertionError(what)

HELP_ALL = r"""
import contextlib, io, runpy, sys
for script in sys.argv[1:]:   # each console-script wrapper as its own __main__, as its process would run it
    out, code = io.StringIO(), 0
    sys.argv = [script, '--help']
    with contextlib.redirect_stdout(out):
        try: runpy.run_path(script, run_name='__main__')
        except SystemExit as e: code = e.code
    print(f"{script}\t{code}\t{'usage' in out.getvalue().lower()}")
"""

def scripts_start(out):
    """Each console script's wrapper runs and parses `--help`: all of them in one interpreter (runpy, as `__main__`),
    which pays the torch and fastai imports once; the checks below and tests/browser_check.py start real processes."""
    import configparser
    declared = configparser.ConfigParser(); declared.read(ROOT/'settings.ini')
    names = sorted(l.split('=')[0].strip() for l in declared['DEFAULT']['console_scripts'].split('\n') if l.strip())
    check(names == sorted(SCRIPTS + RUN_ELSEWHERE), f"settings.ini declares {names}; this check covers {sorted(SCRIPTS + RUN_ELSEWHERE)}")
    r = run(BIN/'python', '-c', HELP_ALL, *[BIN/s for s in SCRIPTS], timeout=600)
    check(r.returncode == 0, f"running the scripts' --help: exit {r.returncode}\n{r.stderr[-2000:]}")
    got = {Path(l.split('\t')[0]).name: l.split('\t')[1:] for l in r.stdout.splitlines() if l.count('\t') == 2}
    for s in SCRIPTS: check(got.get(s) == ['0', 'True'], f"{s} --help: {got.get(s)} (exit status, printed usage)\n{r.stderr[-2000:]}")

def main_job(out):
    "The README's first command, offline, with empty caches."
    tmp = out.parent/'caches'
    env = {**OFFLINE, 'FASTAI_HOME': str(tmp/'fastai'), 'TORCH_HOME': str(tmp/'torch'), 'PET_BREEDS_CACHE': str(tmp/'pb')}
    r = run(BIN/'pet_breeds_train', '--out', out, env=env, timeout=1200)
    check(r.returncode == 0, f"pet_breeds_train --out: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    for needle in ('the bundled sample', 'PETS is not here', 'mode: probe', 'ImageNet weights: efficientnet_lite',
                   'cross-validated accuracy', 'held back 8 photos', 'pet_breeds_train --data PETS_IMAGES --mode finetune'):
        check(needle in r.stdout, f"{needle!r} not in the output:\n{r.stdout}")
    m = json.loads((out/'metrics.json').read_text())
    sample = run(BIN/'pet_breeds_sample').stdout.strip()
    check(m['data'] == sample and m['vocab'] == sorted(m['vocab']) and len(m['vocab']) == 37, (m['data'], sample, m['vocab']))
    check(m['cv']['images'] == 362 and m['trained_on'] == 362, (m['cv']['images'], m['trained_on']))
    check(m['cv']['accuracy'] >= 0.85 and m['cv']['species_accuracy'] >= 0.97, m['cv'])   # issue 9's targets, with margin
    check(len(list(csv.DictReader(open(out/'predictions.csv')))) == 8, 'predictions.csv: 8 rows')
    check(json.loads((out/'model'/'model.json').read_text())['mode'] == 'probe', 'the exported model is the probe')

def predict(out):
    "Photos the model never saw: the two cat breeds and the dog breed of nbs/images."
    files = [PHOTOS/n for n in ('Bengal_1.jpg', 'Bengal_2.jpg', 'american_bulldog_10.jpg', 'american_bulldog_11.jpg')]
    r = run(BIN/'pet_breeds_predict', out/'model', *files, '--json', '--k', '1', timeout=600)
    check(r.returncode == 0, f"pet_breeds_predict: exit {r.returncode}\n{r.stderr[-2000:]}")
    top = [json.loads(l)['top'][0][0] for l in r.stdout.splitlines()]   # [[label, probability]]
    check(len(top) == 4 and all(t[0].isupper() for t in top[:2]) and all(t[0].islower() for t in top[2:]),
          f"cats are capitalised, dogs not: {top}")

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def stop_group(proc):
    "SIGTERM `proc`'s process group (a server shuts its kernels down), then SIGKILL it if it does not stop."
    if proc.poll() is not None: return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError: pass

def jupyter(out):
    "The README: `pip install jupyterlab && jupyter lab nbs/`; a notebook runs in that Jupyter's kernel."
    jup = BIN/'jupyter'
    check(jup.exists(), "jupyter is not installed: tests/run.sh runs the README's `pip install jupyterlab` first")
    r = run(jup, 'nbconvert', '--to', 'notebook', '--execute', '--output-dir', out.parent/'executed',
            ROOT/'nbs'/'00_core.ipynb', timeout=600, cwd=ROOT/'nbs')
    check(r.returncode == 0, f"jupyter nbconvert --execute nbs/00_core.ipynb: exit {r.returncode}\n{r.stderr[-3000:]}")

CHECKS = [scripts_start, main_job, predict, jupyter]

def main():
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(tempfile.mkdtemp())/'pets'
    if out.exists(): shutil.rmtree(out)
    passed = failed = 0
    for c in CHECKS:
        t = time.monotonic()
        try: c(out); passed += 1; print(f"ok   {c.__name__} ({time.monotonic() - t:.0f} s)", flush=True)
        except Exception as e:
            failed += 1; print(f"FAIL {c.__name__} ({time.monotonic() - t:.0f} s): {e}", flush=True)
            if c is main_job: break   # the rest need its model
    print(f"readme_install: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
