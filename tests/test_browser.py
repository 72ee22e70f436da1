"""End to end: `pet_breeds_app` serves the widget with Voila; Debian's Chromium, driven by Playwright,
uploads files through the real file chooser. Needs `apt-get install -y chromium` (no `playwright install`).

The screenshot of the page goes into the test's tmp folder. To refresh the README's and docs' copy,
docs/images/widget.png, ask for it, then rebuild the docs:

    PET_BREEDS_UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/test_browser.py && .venv/bin/python docs/build.py
"""
import os, re, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from pet_breeds.inference import load_model

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT/'docs'/'images'/'widget.png'  # tracked: written only with PET_BREEDS_UPDATE_SCREENSHOT=1
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run', '--disable-sync']
START_TIMEOUT = 120  # importing torch twice (the app, then its kernel) on a busy 2-core machine

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def wait_ready(proc, url:str, log:Path, timeout:float=START_TIMEOUT):
    "Poll a static file: GET / would execute the notebook in a kernel of its own."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: pytest.fail(f"pet_breeds_app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.2)
    pytest.fail(f"Voila was not ready after {timeout}s:\n{log.read_text()}")

def stop(proc):
    "SIGTERM makes Voila shut its kernels down; SIGKILL the group if it does not stop."
    if proc.poll() is not None: return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError: pass

@pytest.fixture(scope='module')
def chromium():
    exe = shutil.which('chromium')
    if exe is None: pytest.fail("Chromium not found: install Debian's with `apt-get install -y chromium`")
    return exe

@pytest.fixture(scope='module')
def app_url(tiny_model, tmp_path_factory):
    "`pet_breeds_app MODEL --no_browser --port P`, running until the module's tests are done."
    tmp = tmp_path_factory.mktemp('app')
    log, port = tmp/'voila.log', free_port()
    exe = Path(sys.executable).parent/'pet_breeds_app'
    t0 = time.monotonic()
    with open(log, 'w') as out:
        # own process group, so the finalizer can stop everything it started; TMPDIR keeps the
        # generated notebook inside pytest's tmp dir
        # --max_mb 1: a file over it that is also over tornado's 10 MiB websocket default shows the
        # app raised that limit (or the upload would silently drop the connection)
        proc = subprocess.Popen([str(exe), str(tiny_model[0]), '--no_browser', '--port', str(port), '--max_mb', '1'], cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, 'TMPDIR': str(tmp)})
    try:
        url = f'http://127.0.0.1:{port}/'
        wait_ready(proc, url + 'voila/static/voila.js', log)
        print(f'Voila ready in {time.monotonic() - t0:.1f}s')
        yield url
    finally:
        stop(proc)

def upload(page, *paths):
    "ipywidgets 8 never attaches its <input type=file> to the DOM: catch the file chooser the button opens."
    with page.expect_file_chooser(timeout=10_000) as fc:
        page.locator('button.widget-upload').click()
    fc.value.set_files([str(p) for p in paths])

def test_upload_in_browser(app_url, chromium, tiny_model, sample_dir, tmp_path):
    from playwright.sync_api import sync_playwright, expect
    pm = load_model(tiny_model[0])
    cat, bengal = sample_dir/'Abyssinian_1.jpg', sample_dir/'Bengal_1.jpg'
    notes = tmp_path/'notes.txt'
    notes.write_text('plain text, not a picture\n')
    big = tmp_path/'big.jpg'
    big.write_bytes(cat.read_bytes() + bytes(11_000_000))
    t0 = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 900, 'height': 700})
            # offline: Voila's template asks a CDN for fonts; refuse at once rather than wait on DNS
            page.route(lambda url: not url.startswith(app_url), lambda route: route.abort())
            page.on('pageerror', lambda e: print('page error:', e))
            page.goto(app_url, wait_until='domcontentloaded', timeout=START_TIMEOUT * 1000)
            button, count = page.locator('button.widget-upload'), page.locator('.pb-count')
            first = page.locator('.pb-results > .pb-result, .pb-results > .pb-error').first
            expect(button).to_be_visible(timeout=START_TIMEOUT * 1000)  # the kernel has run the cell
            expect(count).to_have_text('processed: 0')
            print(f'page ready in {time.monotonic() - t0:.1f}s')

            def check(path, n, cls, *texts):
                upload(page, path)
                expect(count).to_have_text(f'processed: {n}', timeout=30_000)
                expect(first).to_have_class(re.compile(cls))
                for t in texts: expect(first).to_contain_text(t)
                expect(button).to_have_text(re.compile(r'\(0\)'))  # the kernel reset the upload

            check(cat, 1, 'pb-result', 'Abyssinian_1.jpg', pm.predict(cat)[0][0])
            expect(first.locator('.pb-row')).to_have_count(3)
            expect(first.locator('.pb-label').first).to_have_text(pm.predict(cat)[0][0])
            expect(first.locator('.pb-time')).to_have_text(re.compile(r'predicted in [\d.]+ m?s'))
            assert first.locator('img.pb-thumb').evaluate('i => i.complete && i.naturalWidth > 0')

            check(notes, 2, 'pb-error', 'notes.txt: not an image file')
            check(big, 3, 'pb-error', 'big.jpg: file too large (11.', 'the limit is 1.0 MB')
            check(bengal, 4, 'pb-result', 'Bengal_1.jpg', pm.predict(bengal)[0][0])
            expect(page.locator('.pb-results > *')).to_have_count(4)
            print(f'four uploads done in {time.monotonic() - t0:.1f}s')

            page.screenshot(path=str(tmp_path/'widget.png'), full_page=True)
            assert (tmp_path/'widget.png').stat().st_size > 0
            if os.environ.get('PET_BREEDS_UPDATE_SCREENSHOT') == '1':
                SHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp_path/'widget.png', SHOT)
                print(f'updated {SHOT.relative_to(ROOT)}')
        finally:
            browser.close()
