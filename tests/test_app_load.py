"""The apps under load (issue 33), without a browser: `pet_breeds_app` (and `pet_breeds_clean`) started for real, over HTTP on
127.0.0.1. Voila reads the culling and the kernel pool from the app's `voila.json` and the cap from its `voila.py`; a
view past `--max_sessions` gets HTTP 503 and the busy page, whatever the pool holds; a page's shutdown post (Voila's
`beforeunload` beacon) frees its kernel, and so its place. The upload app gives its first view the pool's kernel; the
cleaner keeps no pool. tests/browser_check.py's `load` does the same in Chromium, at scale."""
import http.client, os, re, shutil, signal, socket, subprocess, sys, time, urllib.parse
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent
START = 240   # seconds: Voila imports, then its kernel imports torch, on a busy 2-core machine

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def request(port:int, method:str='GET', path:str='/', body=None, headers=None):
    "`(status, headers, text)` of one request to the app."
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=START)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read().decode('utf-8', 'replace')
    finally: c.close()

@pytest.fixture
def serve(tmp_path):
    "Start `SCRIPT ARGS --no_browser --port P`; yields `(port, log)`; stopped, with its kernels, after."
    procs = []
    def start(*args, script='pet_breeds_app'):
        port, log = free_port(), tmp_path/'voila.log'
        with open(log, 'w') as out:
            procs.append(subprocess.Popen([str(BIN/script), *map(str, args), '--no_browser', '--port', str(port)],
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, 'TMPDIR': str(tmp_path)}))
        deadline = time.monotonic() + START
        while time.monotonic() < deadline:
            assert procs[-1].poll() is None, log.read_text()[-3000:]
            try:
                if request(port, path='/voila/static/voila.js')[0] == 200: return port, log
            except OSError: time.sleep(0.3)
        raise AssertionError(f"Voila not ready after {START} s:\n{log.read_text()[-3000:]}")
    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError: pass

def check_capped(port:int, log:Path, ready:str, cull_idle:int=60, pooled:bool=True):
    """One view let in, the next refused with the busy page; the first page's shutdown post lets the next one in.
    `pooled`: the first view gets the pool's kernel, once Voila has started it (else the app has no pool)."""
    deadline = time.monotonic() + START
    while pooled and 'is filled with 1 kernel' not in log.read_text():
        assert time.monotonic() < deadline, f"no kernel pool after {START} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    status, headers, page = request(port)
    assert status == 200 and ready in page, (status, page[-2000:], log.read_text()[-3000:])
    cookie = re.search(r'_xsrf=([^;]+)', '; '.join(headers.get_all('Set-Cookie') or []))
    assert cookie, f"no _xsrf cookie, which the page's shutdown post needs: {headers.get_all('Set-Cookie')}"
    assert f'Culling kernels with idle durations > {cull_idle} seconds at 10 second intervals' in log.read_text(), \
        log.read_text()
    assert ('Using pre-heated kernel' in log.read_text()) == pooled, log.read_text()[-3000:]
    status, headers, busy = request(port)
    assert status == 503 and 'The app is busy' in busy and 'serves 1 pages at once' in busy, (status, busy[-2000:])
    assert headers['Retry-After'] == '60'
    kernel = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page) or re.search(r'kernel_id\W+([0-9a-f-]{36})', page)
    assert kernel, 'no kernel id in the page'
    # what the page's beforeunload beacon sends: the _xsrf token in the form, the cookie with it
    token = urllib.parse.unquote(cookie.group(1))
    status = request(port, 'POST', f'/voila/api/shutdown/{kernel.group(1)}', body=urllib.parse.urlencode({'_xsrf': token}),
                     headers={'Content-Type': 'application/x-www-form-urlencoded', 'Cookie': f'_xsrf={cookie.group(1)}'})[0]
    assert status == 204, status
    deadline = time.monotonic() + 30
    while (status := request(port)[0]) == 503 and time.monotonic() < deadline: time.sleep(0.5)
    assert status == 200, f"after the shutdown post the next view got {status}"

def test_upload_app_is_capped_and_culled(serve, tiny_model):
    before = sorted(p.name for p in tiny_model[0].iterdir())
    port, log = serve(tiny_model[0], '--max_sessions', 1, '--cull_idle', 20)
    check_capped(port, log, 'application/vnd.jupyter.widget-view+json', cull_idle=20)
    # its pages run onnxruntime, from a model.onnx the app wrote into its own folder if the model had none
    assert 'pet_breeds_app: each page runs the model with onnxruntime (' in log.read_text(), log.read_text()[:3000]
    assert sorted(p.name for p in tiny_model[0].iterdir()) == before

def test_cleaner_is_capped_and_culled(serve, tmp_path, sample_dir):
    data, report = tmp_path/'data', tmp_path/'report'
    data.mkdir()
    report.mkdir()
    shutil.copy(sample_dir/'Bengal_1.jpg', data/'Bengal_1.jpg')
    (report/'label_issues.csv').write_text('file,given,suggested,score,flagged\nBengal_1.jpg,Bengal,Abyssinian,0.1,True\n')
    port, log = serve('--data', data, '--report', report, '--max_sessions', 1, script='pet_breeds_clean')
    # the cleaner reads its decisions from disk as its page starts: a kernel started ahead would show them stale
    check_capped(port, log, 'application/vnd.jupyter.widget-view+json', pooled=False)
