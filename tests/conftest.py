"Shared fixtures: the real PETS sample, synthetic PETS-style folders, and a small trained model."
import os, random, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True, scope='session')
def _private_resize_cache(tmp_path_factory):
    "The suite's resized-image cache lives in a temporary folder, not in the user's ~/.cache."
    os.environ['PET_BREEDS_CACHE'] = str(tmp_path_factory.mktemp('resize-cache'))
SAMPLE = (ROOT/'..'/'shared'/'data'/'pets-sample'/'images').resolve()

@pytest.fixture(scope='session')
def sample_dir():
    "The 300 real PETS images (3 breeds, with the dataset's odd files)."
    if not SAMPLE.is_dir(): pytest.fail(f"real PETS sample missing: {SAMPLE} (CI puts ../shared beside the checkout)")
    return SAMPLE

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

@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory, sample_dir):
    """A ResNet18 trained briefly from random weights on the real sample at 64 px and exported.
    Returns (model_dir, metrics). Good enough to predict labels from the vocab, not to be right."""
    from pet_breeds.cli import train_pets
    out = tmp_path_factory.mktemp('tiny')/'run'
    m = train_pets(sample_dir, out, arch='resnet18', pretrained=False, freeze_epochs=1, epochs=1, lr=1e-3,
                   size=64, item_size=96, bs=32, num_workers=0)
    return out/'model', m

def run_cli(*args, timeout=600, env=None, **kw):
    "Run a console script from this venv; return the CompletedProcess (text)."
    exe = Path(sys.executable).parent/args[0]
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *map(str, args[1:])], capture_output=True, text=True, timeout=timeout, env=e, **kw)
