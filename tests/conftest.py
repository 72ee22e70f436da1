"Shared fixtures: the real PETS photos committed in nbs/images, synthetic PETS-style folders, and a small trained model."
import os, random, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True, scope='session')
def _private_resize_cache(tmp_path_factory):
    "The suite's resized-image cache lives in a temporary folder, not in the user's ~/.cache."
    os.environ['PET_BREEDS_CACHE'] = str(tmp_path_factory.mktemp('resize-cache'))
SAMPLE = ROOT/'nbs'/'images'/'pets'     # committed: the tests run from a clone with nothing beside it
ODD = ROOT/'nbs'/'images'/'odd'         # real-photo oddities: CMYK, grayscale, 16-bit, EXIF-rotated, tiny, large
# photos per breed in SAMPLE (numbers 1-22, 30, 34, 44, 57, 77, 100 where the dataset has them; see nbs/images/README.md)
SAMPLE_COUNTS = {'Abyssinian': 28, 'Bengal': 28, 'american_bulldog': 25}
SAMPLE_IMAGES = sum(SAMPLE_COUNTS.values())   # 81 photos, and one .mat file (Abyssinian_100.mat) beside them
# larger real data, optional and never looked for beside the checkout: only where PET_BREEDS_EXTRA_DATA names a folder
# holding <name>/images (the photos the bundled sample was made from, say); without it those tests skip, saying why
EXTRA_DATA_ENV = 'PET_BREEDS_EXTRA_DATA'

def valid_count(n:int, valid_pct:float=0.2) -> int:
    "Validation images of `n` under fastai's `RandomSplitter` (it cuts `int(valid_pct * n)`)."
    return int(valid_pct * n)

def extra_data(name:str) -> Path:
    "`$PET_BREEDS_EXTRA_DATA/<name>/images` where the variable names such a folder; otherwise the calling test is skipped, saying why."
    root = os.environ.get(EXTRA_DATA_ENV)
    if not root: pytest.skip(f"optional real data: set {EXTRA_DATA_ENV} to a folder holding {name}/images (a clone has only nbs/images)")
    p = Path(root)/name/'images'
    if not p.is_dir(): pytest.skip(f"optional real data not here: {p}")
    return p

def committed(folder:Path) -> Path:
    "`folder`, which the repository holds (a clone with nothing beside it has it)."
    assert folder.is_dir(), f"{folder} is missing: it is part of the repository"
    return folder

@pytest.fixture
def offline():
    """Empty torch and Hugging Face caches, and weight downloads that fail as they do without internet: the library's
    `offline_empty_cache`, which the notebooks' checks use too. The cache folder, which is `TORCH_HOME`."""
    from pet_breeds.test_utils import offline_empty_cache
    with offline_empty_cache() as d: yield Path(d)

@pytest.fixture(scope='session')
def sample_dir():
    "The 81 real PETS photos of 3 breeds committed in nbs/images/pets, with the dataset's odd files (a GIF, an RGBA PNG, a .mat)."
    return committed(SAMPLE)

def copy_photos(dest:Path, per_breed:int, breeds=('Abyssinian', 'Bengal', 'american_bulldog'), pattern:str='_1*.jpg') -> Path:
    """The first `per_breed` committed photos of each of `breeds` whose names end in `pattern`, copied into the new
    folder `dest` (so that a test may change them); `per_breed` may be a dict of breed -> count."""
    dest.mkdir(parents=True)
    counts = per_breed if isinstance(per_breed, dict) else dict.fromkeys(breeds, per_breed)
    for breed, n in counts.items():
        for f in sorted(SAMPLE.glob(f'{breed}{pattern}'))[:n]: shutil.copy(f, dest/f.name)
    return dest

@pytest.fixture(scope='session')
def odd_dir():
    "nbs/images/odd: real photos a user's folder may hold and the three breeds' photos do not."
    return committed(ODD)

def make_synthetic_pets(dest:Path, breeds=('Bengal', 'beagle', 'Sphynx', 'pug'), n:int=24, size:int=48, seed:int=0) -> Path:
    """A learnable PETS-style folder: each breed is a solid colour with noise and a random box,
    named `<breed>_<i>.jpg` like the real dataset."""
    rng = np.random.default_rng(seed)
    palette = [(220, 40, 40), (40, 200, 40), (40, 60, 230), (230, 210, 40), (200, 60, 200), (40, 210, 210)]
    dest.mkdir(parents=True, exist_ok=True)
    for b, (breed, colour) in enumerate(zip(breeds, palette)):
        for i in range(1, n+1):
            arr = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            x, y = rng.integers(0, size//2, 2)
            arr[y:y+size//4, x:x+size//4] = rng.integers(0, 255, 3)
            Image.fromarray(arr).save(dest/f'{breed}_{i}.jpg', quality=90)
    return dest

@pytest.fixture
def synthetic_pets(tmp_path):
    return make_synthetic_pets(tmp_path/'images')

HELD_OUT = ('_1.jpg', '_2.jpg', '_3.jpg')   # of each breed: photos the tiny model never sees, in training or validation

def random_export_meta(arch:str, vocab:list, mode:str='finetune', size:int=64, item_size:int=96, **extra) -> dict:
    "The `model.json` that `export_model` writes for an untrained `arch` (the recipe's settings, its `preprocess` steps)."
    from pet_breeds import runtime
    from pet_breeds.archs import arch_stats
    mean, std = arch_stats(arch)
    meta = {'format': runtime.FORMAT, 'format_version': runtime.FORMAT_VERSION, 'mode': mode, 'arch': arch,
            'pretrained': False, 'n_out': len(vocab), 'vocab': list(vocab), 'head': {}, 'normalize': {'mean': list(mean), 'std': list(std)},
            'label': 'breed', 'valid_pct': 0.2, 'seed': 42, 'item_size': item_size, 'size': size, 'min_scale': 0.75,
            'valid_files': [], 'versions': {}, **extra}
    meta['preprocess'] = runtime.preprocess_spec(meta)
    return meta

@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, sample_dir):
    """The run's one trained model: `pet_breeds_train` on the committed photos less three per breed (held out, never
    seen), a ResNet18 from random weights at 64 px, lr_find then 1 frozen and 1 unfrozen epoch. Good enough to
    predict labels from the vocab, not to be right. A namespace: `result` (the command's exit status and output),
    `out` (its --out), `model`, `held` (the held-out photos' folder), `metrics`."""
    import json, shutil, types
    root = tmp_path_factory.mktemp('tiny')
    data, held = root/'images', root/'held_out'
    data.mkdir(); held.mkdir()
    for p in sorted(sample_dir.iterdir()): shutil.copy(p, (held if p.name.endswith(HELD_OUT) else data)/p.name)
    out = root/'OUT'
    r = run_cli('pet_breeds_train', '--data', data, '--out', out, '--arch', 'resnet18', '--no_pretrained',
                '--freeze_epochs', '1', '--epochs', '1', '--size', '64', '--item_size', '96', '--lr_find_its', '30',
                '--bs', '16')   # the default 64 exceeds the training images here: no full batch, and lr_find divides by 0
    assert r.returncode == 0, r.stderr[-3000:]
    return types.SimpleNamespace(result=r, out=out, model=out/'model', held=held, data=data,
                                 metrics=json.loads((out/'metrics.json').read_text()))

@pytest.fixture(scope='session')
def tiny_model(tiny_run):
    "`(model_dir, metrics)` of the run's one trained model (`tiny_run`)."
    return tiny_run.model, tiny_run.metrics

def build_docs(out:Path, nbs:Path=ROOT/'nbs') -> Path:
    "Run `docs/build.py --out out --nbs nbs`; return the site folder, `out/docs`."
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--out', str(out), '--nbs', str(nbs)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return out/'docs'

@pytest.fixture(scope='session')
def docs_build(tmp_path_factory) -> Path:
    """One `docs/build.py --out DIR` per test run, into a temporary folder (never the tree): DIR/README.md and the
    site in DIR/docs. tests/test_docs.py checks the site; tests/test_repo.py compares it with the committed files."""
    out = tmp_path_factory.mktemp('docs-build')
    build_docs(out)
    return out

class CliResult(subprocess.CompletedProcess):
    "What `run_cli` returns: `returncode`, `stdout` and `stderr` (text), as from `subprocess.run`."

def run_cli(*args, timeout=600, env=None, proc:bool=False, **kw) -> CliResult:
    """Run console script `args[0]` with `args[1:]`; return its exit status, stdout and stderr (text).
    In this process by default: the venv's console-script wrapper itself runs as `__main__` (`runpy`), so fastcore's
    `call_parse` parses `sys.argv` as it does in a process; importing torch and fastai again would cost seconds per
    command on 2 cores. `proc=True` starts a real process from this venv, for tests where the
    process is the point (signals, a fresh interpreter, what it imports); so does `env`, since libraries read
    their variables once per process (fastai's FASTAI_HOME, urllib's proxies)."""
    if proc or kw or env:
        exe = Path(sys.executable).parent/args[0]
        e = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}
        return subprocess.run([str(exe), *map(str, args[1:])], capture_output=True, text=True, timeout=timeout, env=e, **kw)
    import contextlib, io, runpy, traceback
    script, out, err = Path(sys.executable).parent/args[0], io.StringIO(), io.StringIO()
    assert script.is_file(), f"{args[0]} is not installed in this venv"
    old_argv, code = sys.argv, 0
    try:
        sys.argv = [args[0], *map(str, args[1:])]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: runpy.run_path(str(script), run_name='__main__')   # ends in sys.exit(main())
            except SystemExit as e: code = e.code
            except Exception: traceback.print_exc(); code = 1   # as the interpreter would print it
            if isinstance(code, str): print(code, file=sys.stderr); code = 1
    finally:
        sys.argv = old_argv
    return CliResult(args, int(code or 0), out.getvalue(), err.getvalue())

# --- no network in the tests ---------------------------------------------------------------------
# Every test runs as it would on a machine without internet: a connection to anything but this machine
# (loopback: the Voila server, the docs' HTTP server) fails at once with `NetworkBlocked`, in the test
# process and in every Python subprocess it starts (through a `sitecustomize` on PYTHONPATH). A test
# that really needs the network says so with `@pytest.mark.network`.
# The guard is one piece of source, run here and by the subprocesses' sitecustomize.
NETWORK_GUARD = r'''
import ipaddress as _ipaddress, socket as _socket

class NetworkBlocked(ConnectionRefusedError):
    "A test tried to reach a host other than this machine; the test suite runs offline."

_LOCAL_NAMES = {'', 'localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback'}
_originals = {}

def is_local_host(host) -> bool:
    "Whether `host` (a name or address; None for a local bind) names this machine (its own host name may be looked up)."
    if host is None: return True
    if isinstance(host, (bytes, bytearray)): host = bytes(host).decode('ascii', 'replace')
    host = str(host).strip().strip('[]').lower()
    if host in _LOCAL_NAMES or host.endswith('.localhost') or host == _socket.gethostname().lower(): return True
    try: a = _ipaddress.ip_address(host.split('%')[0])
    except ValueError: return False
    return a.is_loopback or a.is_unspecified or (getattr(a, 'ipv4_mapped', None) is not None and a.ipv4_mapped.is_loopback)

def _check_address(family, address):
    if family not in (_socket.AF_INET, _socket.AF_INET6): return   # Unix sockets, netlink: not the network
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_local_host(host): raise NetworkBlocked(f"network blocked in the tests: connection to {address!r}")

def _connect(self, address):
    _check_address(self.family, address)
    return _originals['connect'](self, address)

def _connect_ex(self, address):
    _check_address(self.family, address)
    return _originals['connect_ex'](self, address)

def _create_connection(address, *args, **kwargs):
    if not is_local_host(address[0]): raise NetworkBlocked(f"network blocked in the tests: connection to {address!r}")
    return _originals['create_connection'](address, *args, **kwargs)

def _getaddrinfo(host, *args, **kwargs):
    if not is_local_host(host): raise NetworkBlocked(f"network blocked in the tests: name lookup of {host!r}")
    return _originals['getaddrinfo'](host, *args, **kwargs)

def block_network():
    "Make every connection to another machine (and every name lookup of one) raise `NetworkBlocked`."
    if _originals: return
    _originals.update(connect=_socket.socket.connect, connect_ex=_socket.socket.connect_ex,
                      create_connection=_socket.create_connection, getaddrinfo=_socket.getaddrinfo)
    _socket.socket.connect, _socket.socket.connect_ex = _connect, _connect_ex
    _socket.create_connection, _socket.getaddrinfo = _create_connection, _getaddrinfo

def allow_network():
    "Undo `block_network`."
    if not _originals: return
    _socket.socket.connect, _socket.socket.connect_ex = _originals['connect'], _originals['connect_ex']
    _socket.create_connection, _socket.getaddrinfo = _originals['create_connection'], _originals['getaddrinfo']
    _originals.clear()
'''
NO_NETWORK_ENV = 'PET_BREEDS_TESTS_NO_NETWORK'

import types as _types
netguard = _types.ModuleType('pet_breeds_test_netguard')
exec(compile(NETWORK_GUARD, 'pet_breeds_test_netguard', 'exec'), netguard.__dict__)
NetworkBlocked = netguard.NetworkBlocked

_SITECUSTOMIZE = (f"import os\nif os.environ.get({NO_NETWORK_ENV!r}) == '1':\n"
                  f"    exec(compile({NETWORK_GUARD!r}, 'pet_breeds_test_netguard', 'exec'))\n"
                  f"    block_network()\n")

def pytest_configure(config):
    config.addinivalue_line('markers', 'network: the test may reach the internet (the others run with the network blocked)')

@pytest.fixture(autouse=True, scope='session')
def _offline_subprocesses(tmp_path_factory):
    "Python subprocesses of the tests (the console scripts, Voila) run with the same guard, through a `sitecustomize`."
    site = tmp_path_factory.mktemp('netguard')
    (site/'sitecustomize.py').write_text(_SITECUSTOMIZE)
    old = {k: os.environ.get(k) for k in ('PYTHONPATH', NO_NETWORK_ENV)}
    os.environ['PYTHONPATH'] = os.pathsep.join([str(site), *filter(None, [old['PYTHONPATH']])])
    os.environ[NO_NETWORK_ENV] = '1'
    netguard.block_network()   # session fixtures (the tiny model) too
    yield site
    netguard.allow_network()
    for k, v in old.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v

@pytest.fixture(autouse=True)
def no_network(request, monkeypatch, _offline_subprocesses):
    "Block the network for this test (in-process and in its subprocesses) unless it is marked `network`."
    if request.node.get_closest_marker('network') is None:
        netguard.block_network(); yield; return
    netguard.allow_network()
    monkeypatch.delenv(NO_NETWORK_ENV, raising=False)
    try: yield
    finally: netguard.block_network()
