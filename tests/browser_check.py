"""The package as a reader meets it in a browser, with the README's install alone: `tests/run.sh` runs this right
after tests/readme_install.py, before the dev requirements go in, in Debian's Chromium driven by Playwright
from an environment of its own (`.venv-browser`, Playwright only), so nothing the tests install can help the
app. One browser for the whole test run:

- the upload app: `pet_breeds_app` (from the README's `.venv`) serves the README main job's model with Voila;
  `GET /` answers HTTP 200 (the page's notebook ran in a Jupyter kernel: without `ipykernel` it answers 500),
  and HTTP 403 to a `Host` header naming another machine (DNS rebinding). Photos go through the real file
  chooser (ipywidgets 8 makes its `<input type=file>` on click). A cat and a
  dog come back with two different labels, each the one `pet_breeds_predict` gives, of the right species; a
  text file and an oversized file get their one-line errors and the page goes on;
- the cleaner: `pet_breeds_clean` on a copy of committed photos and a hand-written `label_issues.csv`: one
  photo relabelled through its breed menu, one removed, both still chosen after a reload, applied; the files on
  disk moved as decided and nothing else, then `pet_breeds_undo` puts every file back byte for byte;
- the app under load (issue 33), with `--max_sessions 6` and a pool of one kernel: 30 page views one after
  another (PET_BREEDS_LOAD_VIEWS), each left for another page as a visitor leaves it, leave only the pool's kernel
  and Voila's memory where one view left it; a page left open and idle outlives the culling (`--cull_idle 20`) of a
  view that never connected and of a page whose browser went away; once its kernel is gone the page says it timed
  out, and its button reloads it; 6 people at once upload 3 photos each, every one answered with
  `pet_breeds_predict`'s labels (p50 and p95 latency printed); a seventh person gets HTTP 503 and the busy page;

    .venv-browser/bin/python tests/browser_check.py RUN     # RUN: the main job's output (readme_install.py's OUT)
    .venv-browser/bin/python tests/browser_check.py RUN cleaner load         # only these checks
    PET_BREEDS_UPDATE_SCREENSHOT=1 ...                      # also copy the page's screenshot to docs/images/widget.png

Ends with 'browser_check: N passed, N failed'. Needs only the standard library and Playwright."""
import http.client, json, os, re, shutil, subprocess, sys, tempfile, time
import urllib.request
from pathlib import Path
from readme_install import check, free_port, stop_group   # standard library only, like this script

ROOT = Path(__file__).resolve().parents[1]
APP_BIN = ROOT/'.venv'/'bin'                 # the README's environment: the app and the predictor run from there
PHOTOS = ROOT/'nbs'/'images'/'pets'
SHOT = ROOT/'docs'/'images'/'widget.png'     # tracked: written only with PET_BREEDS_UPDATE_SCREENSHOT=1
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run', '--disable-sync']
START_TIMEOUT = 240  # Voila imports torch, then its kernel does again, on a busy 2-core machine

def predicted(model:Path, files) -> list:
    """`pet_breeds_predict --json --k 3 --precision fp32` on `files`: a list of `[[label, probability], ...]`, best
    first. fp32, as the pages compute (onnxruntime): under `auto`, a CPU with native bf16 predicts in bf16, which moves
    probabilities by a few hundredths and can swap two close runners-up."""
    r = subprocess.run([str(APP_BIN/'pet_breeds_predict'), str(model), *map(str, files), '--json', '--k', '3',
                        '--precision', 'fp32'],
                       capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, f"pet_breeds_predict: exit {r.returncode}\n{r.stderr[-2000:]}")
    return [json.loads(l)['top'] for l in r.stdout.splitlines()]

class App:
    "`SCRIPT ARGS --no_browser --port P` (the upload app, or `pet_breeds_clean`) in its own process group, stopped on exit."
    def __init__(self, tmp:Path, *args, script:str='pet_breeds_app'):
        self.log, self.port = tmp/'voila.log', free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        # TMPDIR keeps its notebook in tmp
        with open(self.log, 'w') as out:
            self.proc = subprocess.Popen([str(APP_BIN/script), *map(str, args), '--no_browser', '--port', str(self.port)],
                                         cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, 'TMPDIR': str(tmp)})
    def wait_ready(self):
        "Poll a static file: GET / would execute the notebook in a kernel of its own."
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"pet_breeds_app exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + 'voila/static/voila.js', timeout=2) as r:
                    if r.status == 200: return
            except OSError: time.sleep(0.3)
        raise AssertionError(f"Voila was not ready after {START_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")
    def status_for_host(self, host:str) -> int:
        "The HTTP status of `GET /` with the `Host` header `host`."
        c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=START_TIMEOUT)
        try:
            c.request('GET', '/', headers={'Host': host})
            return c.getresponse().status
        finally: c.close()
    def __enter__(self): return self
    def __exit__(self, *exc):
        "SIGTERM makes Voila shut its kernels down; SIGKILL the group if it does not stop."
        stop_group(self.proc)

def upload(page, *paths):
    "ipywidgets 8 never attaches its <input type=file> to the DOM: catch the file chooser the button opens."
    with page.expect_file_chooser(timeout=10_000) as fc:
        page.locator('button.widget-upload').click()
    fc.value.set_files([str(p) for p in paths])

def open_page(browser, app):
    "A page on the app, offline: Voila's template asks a CDN for fonts; refuse at once rather than wait on DNS."
    page = browser.new_page(viewport={'width': 900, 'height': 760})
    page.route(lambda url: not url.startswith(app.url), lambda route: route.abort())
    r = page.goto(app.url, wait_until='domcontentloaded', timeout=START_TIMEOUT * 1000)
    # HTTP 200: Voila ran the page's notebook in a Jupyter kernel (without ipykernel it answers 500)
    check(r is not None and r.status == 200, f"GET / answered {r and r.status}: {r and r.text()[-1500:]}\n{app.log.read_text()[-2000:]}")
    return page

def upload_app(browser, run:Path, tmp:Path):
    "Upload a cat, a text file, an oversized file and a dog; each answer as `pet_breeds_predict` gives it."
    from playwright.sync_api import expect
    model = run/'model'
    cat, dog = PHOTOS/'Bengal_1.jpg', PHOTOS/'american_bulldog_10.jpg'   # not in the bundled sample it trained on
    want = dict(zip(('cat', 'dog'), predicted(model, [cat, dog])))
    check(want['cat'][0][0][0].isupper() and want['dog'][0][0][0].islower() and want['cat'][0][0] != want['dog'][0][0],
          f"the README's model should tell this cat from this dog: {want}")
    notes, big = tmp/'notes.txt', tmp/'big.jpg'
    notes.write_text('plain text, not a picture\n')
    big.write_bytes(cat.read_bytes() + bytes(11_000_000))
    # --max_mb 1: a file over it that is also over tornado's 10 MiB websocket default shows the app raised
    # that limit (or the upload would silently drop the connection)
    with App(tmp, model, '--max_mb', '1') as app:
        app.wait_ready()
        # DNS rebinding: a page elsewhere makes its own name resolve to 127.0.0.1; the app answers only this machine
        status = app.status_for_host(f'rebind.example:{app.port}')
        check(status == 403, f"GET / with another machine's Host header answered {status}, not 403")
        page = open_page(browser, app)
        button, count = page.locator('button.widget-upload'), page.locator('.pb-count')
        first = page.locator('.pb-results > .pb-result, .pb-results > .pb-error').first
        expect(button).to_be_visible(timeout=START_TIMEOUT * 1000)  # the kernel has run the cell
        expect(count).to_have_text('processed: 0')

        def send(path, n, cls, *texts):
            upload(page, path)
            expect(count).to_have_text(f'processed: {n}', timeout=60_000)
            expect(first).to_have_class(re.compile(cls))
            for t in texts: expect(first).to_contain_text(t)
            expect(button).to_have_text(re.compile(r'\(0\)'))  # the kernel reset the upload

        send(cat, 1, 'pb-result', cat.name)
        expect(first.locator('.pb-row')).to_have_count(3)
        expect(first.locator('.pb-label')).to_have_text([l for l, _ in want['cat']])
        expect(first.locator('.pb-time')).to_have_text(re.compile(r'predicted in [\d.]+ m?s'))
        check(first.locator('img.pb-thumb').evaluate('i => i.complete && i.naturalWidth > 0'), 'the thumbnail did not load')
        send(notes, 2, 'pb-error', 'notes.txt: not an image file')
        send(big, 3, 'pb-error', 'big.jpg: file too large (11.', 'the limit is 1.0 MB')
        send(dog, 4, 'pb-result', dog.name)
        expect(first.locator('.pb-label')).to_have_text([l for l, _ in want['dog']])
        expect(page.locator('.pb-results > *')).to_have_count(4)
        page.screenshot(path=str(tmp/'widget.png'), full_page=True)
        check((tmp/'widget.png').stat().st_size > 0, 'no screenshot')
        if os.environ.get('PET_BREEDS_UPDATE_SCREENSHOT') == '1':
            shutil.copyfile(tmp/'widget.png', SHOT)
            print(f'updated {SHOT.relative_to(ROOT)} (rebuild the docs: .venv/bin/python docs/build.py)')
        page.close()

def process_tree(pid:int) -> list:
    "`pid` and every process below it, from /proc."
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit(): continue
        try: stat = Path(f'/proc/{d}/stat').read_text()
        except OSError: continue
        kids.setdefault(int(stat.rsplit(')', 1)[1].split()[1]), []).append(int(d))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += kids.get(p, [])
    return found

def rss_mb(pid:int) -> float:
    "The resident memory of `pid` in MB (0 once it is gone)."
    try: return int(re.search(r'VmRSS:\s+(\d+)', Path(f'/proc/{pid}/status').read_text()).group(1)) / 1024
    except (OSError, AttributeError): return 0.0

def kernels_of(app) -> list:
    "The pids of the Jupyter kernels Voila (`app`'s process) runs."
    def cmd(p):
        try: return Path(f'/proc/{p}/cmdline').read_bytes()
        except OSError: return b''
    return [p for p in process_tree(app.proc.pid)[1:] if b'ipykernel' in cmd(p)]

def app_memory(app) -> float:
    "The resident memory of Voila and its kernels, in MB."
    return sum(rss_mb(p) for p in process_tree(app.proc.pid))

def wait_kernels(app, n:int, timeout:float) -> float:
    "Seconds until `app` runs `n` kernels at most; AssertionError after `timeout`."
    t = time.monotonic()
    while len(kernels_of(app)) > n:
        check(time.monotonic() - t < timeout, f"{len(kernels_of(app))} kernels after {timeout:.0f} s, not {n}")
        time.sleep(0.2)
    return time.monotonic() - t

def kernel_ids(app) -> dict:
    "`{kernel id: pid}` of the Jupyter kernels Voila (`app`'s process) runs, from their connection files' names."
    found = {}
    for p in kernels_of(app):
        try: m = re.search(rb'kernel-([0-9a-f-]{36})\.json', Path(f'/proc/{p}/cmdline').read_bytes())
        except OSError: continue
        if m: found[m.group(1).decode()] = p
    return found

def wait_until(what:str, ok, timeout:float) -> float:
    "Seconds until `ok()` is true; AssertionError naming `what` after `timeout`."
    t = time.monotonic()
    while not ok():
        check(time.monotonic() - t < timeout, f"{what}: not after {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t

def cpu_ticks(pids) -> int:
    "The CPU time `pids` used so far, in clock ticks."
    total = 0
    for p in pids:
        try: total += sum(map(int, Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()[11:13]))
        except (OSError, ValueError): pass
    return total

def wait_pool(app, n:int, timeout:float=START_TIMEOUT):
    "Wait until `app` runs `n` kernels (its pool, when no page is open) and they are done starting (no CPU used)."
    wait_kernels(app, n, timeout)
    wait_until(f"{n} kernels", lambda: len(kernels_of(app)) == n, timeout)
    t = time.monotonic()
    while True:
        before = cpu_ticks(kernels_of(app))
        time.sleep(0.5)
        if cpu_ticks(kernels_of(app)) - before <= 2 and len(kernels_of(app)) == n: return
        check(time.monotonic() - t < timeout, f"the pool's kernels still busy after {timeout:.0f} s")

def page_kernel(page) -> str:
    "The id of the kernel Voila started, or took from its pool, for `page`."
    kernel = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page.content())
    check(kernel is not None, 'no kernel id in the page')
    return kernel.group(1)

def end_kernel(page, kernel:str) -> int:
    "Post Voila's shutdown of `kernel` from `page`, as its `beforeunload` beacon does: the HTTP status."
    return page.evaluate("""async id => {
        const form = new FormData(), c = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
        form.append('_xsrf', c ? c.slice(6) : '');
        return (await fetch(`voila/api/shutdown/${id}`, {method: 'POST', body: form})).status;
    }""", kernel)

LOAD_VIEWS = int(os.environ.get('PET_BREEDS_LOAD_VIEWS', 30))   # issue 33's count
LOAD_POOL = int(os.environ.get('PET_BREEDS_LOAD_POOL', 1))      # widget.POOL_SIZE; 0 measures the app without a pool
LOAD_PEOPLE, LOAD_PHOTOS = 6, ['Bengal_1.jpg', 'american_bulldog_10.jpg', 'Abyssinian_1.jpg']
LOAD_CULL_IDLE = 20        # `--cull_idle` here: the app's 60 s would make this check wait over a minute for the culling
CULL_WAIT = LOAD_CULL_IDLE + 10 + 30   # + widget.CULL_INTERVAL, and time for the shutdown on a busy machine
# Voila's template asks a CDN for fonts: refused at once by the host resolver, not by Playwright's routing, which
# makes Chromium drop the beacon a page sends as it is left (measured: no kernel freed, with routing)
OFFLINE = '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'

def load(browser, run:Path, tmp:Path):
    """The upload app under load (issue 33), `--max_sessions 6`, a pool of one kernel: views one after another, each
    left as a visitor leaves it, free their kernels; kernels no page uses are culled, an idle open page is not; a page
    whose kernel ended says so and reloads; 6 people at once each get their 3 photos' right labels; a seventh gets
    HTTP 503 and the busy page. Prints the figures."""
    from playwright.sync_api import expect
    model, tmp = run/'model', tmp/'load'
    tmp.mkdir()
    photos = [PHOTOS/n for n in LOAD_PHOTOS]
    want = {p.name: [l for l, _ in top] for p, top in zip(photos, predicted(model, photos))}
    figures = {}
    offline = browser.browser_type.launch(executable_path=shutil.which('chromium'), headless=True,
                                          args=[*CHROMIUM_ARGS, OFFLINE])
    app = App(tmp, model, '--max_sessions', LOAD_PEOPLE, '--pool', LOAD_POOL, '--cull_idle', LOAD_CULL_IDLE)
    try:
        app.wait_ready()

        def view(**kw):
            "Open a page as a visitor does; return it once its kernel has run the cell."
            page = offline.new_page(**kw)
            r = page.goto(app.url, timeout=START_TIMEOUT * 1000)
            check(r is not None and r.status == 200, f"GET / answered {r and r.status}")
            expect(page.locator('.pb-count')).to_have_text('processed: 0', timeout=START_TIMEOUT * 1000)
            return page

        def leave(page):
            "Leave the page for another, as a visitor does: Voila's `beforeunload` beacon ends its kernel."
            kernel = page_kernel(page)
            page.goto('about:blank')
            wait_until(f"the kernel of a page left ({kernel})", lambda: kernel not in kernel_ids(app), 30)
            page.close()

        # 1. views one after another, each left as a visitor leaves it: after each, the pool's kernels alone, and
        #    all the memory within 10% of what the first left, once the pool's kernel is ready: checked in full after
        #    the first and the last; after the others, the pool's new kernel is still starting, and Voila's own
        #    growth is what is checked (the pool's kernel is a new process each time, the same size once ready)
        wait_pool(app, LOAD_POOL)
        figures['pool'] = app_memory(app)
        t0, opened, after, voila = time.monotonic(), [], [], []
        for i in range(LOAD_VIEWS):
            t = time.monotonic()
            page = view()
            opened.append(time.monotonic() - t)
            if i == 0:
                figures['one view open'] = (len(kernels_of(app)), app_memory(app), [rss_mb(k) for k in kernels_of(app)])
                # the README's model has no model.onnx: the app exported one for its pages, which run without PyTorch
                torch_in = [k for k in kernels_of(app) if b'libtorch' in Path(f'/proc/{k}/maps').read_bytes()]
                check(not torch_in, f"kernels {torch_in} loaded PyTorch: the pages should run onnxruntime")
            leave(page)
            wait_kernels(app, LOAD_POOL, 30)
            voila.append(rss_mb(app.proc.pid))
            if i in (0, LOAD_VIEWS - 1):
                wait_pool(app, LOAD_POOL)
                after.append(app_memory(app))
                check(after[-1] <= 1.1 * after[0],
                      f"view {i + 1}: {after[-1]:.0f} MB once closed, view 1 left {after[0]:.0f} MB")
            check(voila[-1] - voila[0] <= 0.1 * after[0],
                  f"view {i + 1}: Voila {voila[-1]:.0f} MB, {voila[0]:.0f} MB after view 1, {after[0]:.0f} MB in all")
        figures['views'] = (time.monotonic() - t0, opened, after, voila)

        # 2. culling: a view that never connects (no JavaScript) and a page whose browser went away (no beacon)
        #    are culled; a page left open and idle all that time is not, and still predicts
        idle = view()
        with urllib.request.urlopen(app.url, timeout=START_TIMEOUT) as r:
            check(r.status == 200, r.status)
            bot = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', r.read().decode()).group(1)
        gone = view()
        lost = [bot, page_kernel(gone)]
        gone.close()   # no beforeunload: as a browser that crashed, slept, or was closed before any click
        t = time.monotonic()
        wait_until('the culling', lambda: not set(lost) & set(kernel_ids(app)), CULL_WAIT)
        figures['culled after'] = time.monotonic() - t
        check(page_kernel(idle) in kernel_ids(app), 'the page left open and idle was culled')
        upload(idle, photos[0])
        expect(idle.locator('.pb-count')).to_have_text('processed: 1', timeout=60_000)
        expect(idle.locator('.pb-results > .pb-result').first.locator('.pb-label')).to_have_text(want[photos[0].name])
        # the same page once its kernel is gone (what the culling does to a page whose browser slept): it says so,
        # on the user's return, and its button reloads it with a new kernel
        kernel = page_kernel(idle)
        check(end_kernel(idle, kernel) == 204, "the shutdown post")
        wait_until('the kernel ended', lambda: kernel not in kernel_ids(app), 30)
        idle.evaluate("window.dispatchEvent(new Event('focus'))")   # the user comes back to the tab
        expect(idle.locator('.pb-timeout')).to_contain_text('This page has timed out', timeout=20_000)
        idle.screenshot(path=str(tmp/'timed_out.png'))
        idle.locator('.pb-timeout button.pb-reload').click()
        expect(idle.locator('.pb-count')).to_have_text('processed: 0', timeout=START_TIMEOUT * 1000)
        expect(idle.locator('.pb-timeout')).to_have_count(0)
        check(page_kernel(idle) != kernel, 'the reloaded page has the old kernel')
        leave(idle)
        wait_pool(app, LOAD_POOL)

        # 3. six people at once: pages opened together, then three rounds of one photo each, all in flight at once
        t = time.monotonic()
        pages = [offline.new_page(viewport={'width': 900, 'height': 760}) for _ in range(LOAD_PEOPLE)]
        for p in pages:
            r = p.goto(app.url, wait_until='commit', timeout=START_TIMEOUT * 1000)
            check(r is not None and r.status == 200, f"person {pages.index(p) + 1}: GET / answered {r and r.status}")
        for p in pages: expect(p.locator('.pb-count')).to_have_text('processed: 0', timeout=START_TIMEOUT * 1000)
        figures['six open'] = time.monotonic() - t
        # the seventh person, past the cap (the pool's kernel is there for the next view, not for a seventh page)
        seventh = offline.new_page()
        r = seventh.goto(app.url, timeout=60_000)
        check(r is not None and r.status == 503, f"a seventh person got HTTP {r and r.status}, not 503")
        expect(seventh.locator('h2.pb-busy')).to_have_text('The app is busy')
        expect(seventh.locator('body')).to_contain_text('Please try again in a minute')
        seventh.close()
        wait_pool(app, LOAD_PEOPLE + LOAD_POOL)
        figures['six people'] = app_memory(app)
        latencies = []
        for rnd in range(len(photos)):
            sent = {}
            for i, p in enumerate(pages):
                upload(p, photos[(i + rnd) % len(photos)])
                sent[i] = time.monotonic()
            while sent:
                for i in list(sent):
                    if pages[i].locator('.pb-count').inner_text() == f'processed: {rnd + 1}':
                        latencies.append(time.monotonic() - sent.pop(i))
                check(time.monotonic() - min(sent.values(), default=time.monotonic()) < 120,
                      f"round {rnd + 1}: no answer after 120 s for people {sorted(sent)}")
                time.sleep(0.02)
        for i, p in enumerate(pages):   # every answer there, each with its photo's labels, newest first
            results = p.locator('.pb-results > .pb-result')
            expect(results).to_have_count(len(photos))
            for j in range(len(photos)):
                photo = photos[(i + len(photos) - 1 - j) % len(photos)].name
                expect(results.nth(j).locator('.pb-file')).to_have_text(photo)
                expect(results.nth(j).locator('.pb-label')).to_have_text(want[photo])
        for p in pages: leave(p)
        wait_pool(app, LOAD_POOL)
    finally:
        app.__exit__()
        offline.close()
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, round(q * (len(lat) - 1)))]
    n, mem, ks = figures['one view open']
    total, opened, after, voila = figures['views']
    later = sorted(opened[1:]) or [float('nan')]
    print(f"load: --pool {LOAD_POOL}: {figures['pool']:.0f} MB with no page open; one view open: {n} kernels "
          f"({', '.join(f'{k:.0f}' for k in ks)} MB RSS), {mem:.0f} MB with Voila")
    print(f"load: a first view took {opened[0]:.1f} s to show its widget; the views after it, each opened as "
          f"soon as the one before was left, {later[len(later) // 2]:.1f} s (median), {later[-1]:.1f} s at most")
    print(f"load: {LOAD_VIEWS} views one after another in {total:.0f} s: {LOAD_POOL} kernels after each was left; "
          f"Voila {voila[0]:.0f} MB after the first, {max(voila):.0f} MB at most; in all {after[0]:.0f} MB after "
          f"the first, {after[-1]:.0f} MB after the last")
    print(f"load: a view that never connected and a page whose browser went away culled in "
          f"{figures['culled after']:.0f} s (--cull_idle {LOAD_CULL_IDLE}); the page left open and idle still "
          f"predicted; once its kernel ended it said so, and reloaded")
    print(f"load: {LOAD_PEOPLE} people: pages open in {figures['six open']:.1f} s, "
          f"{figures['six people']:.0f} MB in all; "
          f"{len(lat)} predictions, all answered right: p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, "
          f"max {lat[-1]:.2f} s; a seventh person: HTTP 503, the busy page")


CLEAN_PHOTOS = ['Bengal_1.jpg', 'Bengal_2.jpg', 'Bengal_3.jpg', 'Abyssinian_1.jpg', 'Abyssinian_2.jpg',
                'american_bulldog_2.jpg', 'american_bulldog_3.jpg', 'american_bulldog_10.jpg']
CLEAN_ISSUES = """file,given,suggested,score,flagged
Bengal_2.jpg,Bengal,Abyssinian,0.012,True
american_bulldog_2.jpg,american_bulldog,Bengal,0.05,True
Abyssinian_1.jpg,Abyssinian,american_bulldog,0.31,False
"""

def files_of(folder:Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}

def cleaner(browser, run:Path, tmp:Path):
    """`pet_breeds_clean --data DATA --report REPORT` on a copy of committed photos and an audit's label_issues.csv:
    relabel one photo through its breed menu, remove one; a reload shows both decisions; apply; the files on disk
    moved as decided, nothing else; `pet_breeds_undo --report REPORT` puts every file back, byte for byte."""
    from playwright.sync_api import expect
    tmp = tmp/'clean'; data, report = tmp/'data', tmp/'report'
    data.mkdir(parents=True); report.mkdir()
    for n in CLEAN_PHOTOS: shutil.copyfile(PHOTOS/n, data/n)
    (report/'label_issues.csv').write_text(CLEAN_ISSUES)
    before = files_of(data)
    with App(tmp, '--data', data, '--report', report, script='pet_breeds_clean') as app:
        app.wait_ready()
        page = open_page(browser, app)
        row = lambda name: page.locator('.pb-suspect').filter(has_text=name)
        expect(page.locator('.pb-suspect')).to_have_count(2, timeout=START_TIMEOUT * 1000)   # the kernel has run the cell: the flagged two
        expect(row('Bengal_2.jpg').locator('select')).to_have_value('Abyssinian')        # the suggestion first
        row('Bengal_2.jpg').locator('select').select_option(label='american_bulldog')     # a breed: relabel
        row('american_bulldog_2.jpg').get_by_role('button', name='remove').click()
        expect(page.get_by_role('button', name='apply 2 decisions')).to_be_visible()
        page.reload(wait_until='domcontentloaded', timeout=START_TIMEOUT * 1000)          # a new kernel: the decisions came from disk
        expect(page.locator('.pb-suspect')).to_have_count(2, timeout=START_TIMEOUT * 1000)
        expect(row('Bengal_2.jpg').get_by_role('button', name='relabel')).to_have_class(re.compile('mod-active'))
        expect(row('Bengal_2.jpg').locator('select')).to_have_value('american_bulldog')
        expect(row('american_bulldog_2.jpg').get_by_role('button', name='remove')).to_have_class(re.compile('mod-active'))
        page.screenshot(path=str(tmp/'cleaner.png'), full_page=True)
        page.get_by_role('button', name='apply 2 decisions').click()
        expect(page.locator('.pb-status')).to_contain_text('moved 2 photos', timeout=60_000)
        expect(row('Bengal_2.jpg')).to_contain_text('now american_bulldog_11.jpg')
        page.close()
    after = files_of(data)
    want = {k: v for k, v in before.items() if k not in ('Bengal_2.jpg', 'american_bulldog_2.jpg')}
    want.update({'american_bulldog_11.jpg': before['Bengal_2.jpg'], '_removed/american_bulldog_2.jpg': before['american_bulldog_2.jpg']})
    check(after == want, f"after apply: {sorted(after)}, expected {sorted(want)}")
    r = subprocess.run([str(APP_BIN/'pet_breeds_undo'), '--report', str(report)], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0 and r.stdout == 'pet_breeds_undo: put back 2 photos\n', f"undo: exit {r.returncode}\n{r.stdout}{r.stderr[-2000:]}")
    check(files_of(data) == before, f"after undo: {sorted(files_of(data))}, expected {sorted(before)}")

CHECKS = [upload_app, cleaner, load]

def main():
    from playwright.sync_api import sync_playwright
    run, names = Path(sys.argv[1]).resolve(), sys.argv[2:]
    chosen = [c for c in CHECKS if not names or c.__name__ in names]
    check(len(chosen) == len(names) or not names, f"unknown checks {names}: choose among {[c.__name__ for c in CHECKS]}")
    if upload_app in chosen or load in chosen:
        check((run/'model'/'model.json').is_file(), f"{run}/model is not an exported model: run tests/readme_install.py {run} first")
    exe = shutil.which('chromium')
    check(exe is not None, "Chromium not found: install Debian's with `apt-get install -y chromium`")
    tmp = Path(tempfile.mkdtemp(prefix='browser_check_'))
    passed = failed = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            for c in chosen:
                t = time.monotonic()
                try: c(browser, run, tmp); passed += 1; print(f"ok   {c.__name__} ({time.monotonic() - t:.0f} s)", flush=True)
                except Exception as e: failed += 1; print(f"FAIL {c.__name__} ({time.monotonic() - t:.0f} s): {e}", flush=True)
        finally: browser.close()
    print(f"browser_check: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
