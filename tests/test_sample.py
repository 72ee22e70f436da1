"The bundled sample: 370 real photos (10 of each of the 37 breeds), its licence files, and `pet_breeds_sample`."
import shutil, subprocess, sys, zipfile
from collections import Counter
from pathlib import Path
import pytest
from PIL import Image
from pet_breeds.core import BREEDS, CAT_BREEDS, DataNotFound, PetBreedsError, breed_label, species_label, labeller
from pet_breeds.data import sample_path, copy_sample, scan_images, pets_images_path
import pet_breeds.data
from conftest import run_cli, extra_data

SHORT_SIDE = 288  # the sample's shorter side; smaller originals were not scaled up
ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def images(): return sorted(sample_path().glob('*'))

def test_sample_path_is_the_packaged_folder():
    p = sample_path()
    assert p == Path(pet_breeds.data.__file__).parent/'sample'/'images' and p.is_dir()

def test_370_images_10_for_each_of_37_breeds(images):
    assert len(images) == 370 and all(f.suffix == '.jpg' for f in images)
    breeds = Counter(labeller('breed')(f) for f in images)
    assert sorted(breeds) == sorted(BREEDS) and set(breeds.values()) == {10}
    species = Counter(labeller('species')(f) for f in images)
    assert species == {'cat': 10*len(CAT_BREEDS), 'dog': 10*(37 - len(CAT_BREEDS))}
    assert all(species_label(f) == ('cat' if breed_label(f) in CAT_BREEDS else 'dog') for f in images)

def test_same_names_as_the_originals(images):
    "Optional: where $PET_BREEDS_EXTRA_DATA/pets-37x10 holds the photos the sample was made from."
    originals = extra_data('pets-37x10')
    assert [f.name for f in images] == sorted(f.name for f in originals.iterdir())

def test_total_size_at_most_10_MB():
    folder = sample_path().parent
    total = sum(f.stat().st_size for f in folder.rglob('*') if f.is_file())
    assert total <= 10_000_000, f"{folder}: {total/1e6:.2f} MB"

def test_readme_and_licence_name_the_licence_and_the_source():
    for name in ('README.md', 'LICENSE'):
        text = (sample_path().parent/name).read_text()
        for s in ('CC BY-SA 4.0', 'https://creativecommons.org/licenses/by-sa/4.0/', 'Oxford-IIIT Pet Dataset',
                  'Parkhi', 'Vedaldi', 'Zisserman', 'Jawahar', '2012', 'https://www.robots.ox.ac.uk/~vgg/data/pets/',
                  f'{SHORT_SIDE} px'):
            assert s in text, f"{name} does not mention {s!r}"
    assert 'Creative Commons Attribution-ShareAlike 4.0 International' in (sample_path().parent/'LICENSE').read_text()

def test_scan_skips_and_converts_nothing():
    rep = scan_images(sample_path())
    assert len(rep.images) == 370 and rep.skipped == [] and rep.converted == []

def test_every_image_is_downsized_baseline_jpeg_without_exif(images):
    shorter = []
    for f in images:
        with Image.open(f) as im:
            assert im.format == 'JPEG' and im.mode == 'RGB', f
            assert not im.info.get('progressive') and 'exif' not in im.info and 'icc_profile' not in im.info, f
            shorter.append(min(im.size))
    assert max(shorter) == SHORT_SIDE
    assert Counter(shorter)[SHORT_SIDE] >= 300   # only the few smaller originals stay below it

def test_each_image_is_its_original_downsized(images):
    "Optional: each photo's shorter side is its original's, capped at SHORT_SIDE, and its aspect ratio is kept."
    originals = extra_data('pets-37x10')
    for f in images:
        with Image.open(f) as im, Image.open(originals/f.name) as o:
            assert min(im.size) == min(SHORT_SIDE, *o.size), f.name
            assert abs(im.size[0] / im.size[1] - o.size[0] / o.size[1]) < 0.01, f.name

def test_missing_sample_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(pet_breeds.data, '_package_dir', lambda: tmp_path)
    with pytest.raises(DataNotFound, match='installation is incomplete'): sample_path()
    (tmp_path/'sample'/'images').mkdir(parents=True)
    with pytest.raises(DataNotFound, match='holds no images'): sample_path()

def test_command_prints_the_path():
    r = run_cli('pet_breeds_sample', timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sample_path())

def test_command_copies_and_never_overwrites(tmp_path):
    dest = tmp_path/'mine'
    r = run_cli('pet_breeds_sample', '--out', dest, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dest.iterdir()) == ['LICENSE', 'README.md', 'images']
    assert sorted(p.name for p in (dest/'images').iterdir()) == sorted(p.name for p in sample_path().iterdir())
    assert (dest/'images'/'pug_127.jpg').read_bytes() == (sample_path()/'pug_127.jpg').read_bytes()
    assert pets_images_path(dest) == dest/'images'
    (dest/'images'/'pug_127.jpg').write_bytes(b'mine')
    r = run_cli('pet_breeds_sample', '--out', dest, timeout=120)
    assert r.returncode != 0 and 'pet_breeds_sample:' in r.stderr and 'not empty' in r.stderr, r.stderr
    assert (dest/'images'/'pug_127.jpg').read_bytes() == b'mine'   # nothing overwritten

def test_copy_refuses_a_file_and_a_folder_with_anything_in_it(tmp_path):
    other = tmp_path/'other'; other.mkdir(); (other/'notes.txt').write_text('keep')
    with pytest.raises(PetBreedsError, match='not empty'): copy_sample(other)
    assert [p.name for p in other.iterdir()] == ['notes.txt']
    (tmp_path/'afile').write_text('keep')
    with pytest.raises(PetBreedsError, match='not a folder'): copy_sample(tmp_path/'afile')
    assert (tmp_path/'afile').read_text() == 'keep'
    assert copy_sample(tmp_path/'empty/new') == tmp_path/'empty/new/images'   # a new folder, parents made

def test_the_wheel_ships_the_sample(tmp_path):
    """A non-editable install ships the sample: build the wheel for real (offline, from a copy of the files setup.py
    reads, so the checkout gets no build/ or egg-info) and list what is inside it."""
    proj = tmp_path/'proj'; proj.mkdir()
    for name in ('settings.ini', 'setup.py', 'pyproject.toml', 'MANIFEST.in', 'README.md'): shutil.copy(ROOT/name, proj/name)
    shutil.copytree(ROOT/'pet_breeds', proj/'pet_breeds', ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation', '--no-index',
                        '-w', str(tmp_path/'dist')], cwd=proj, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    wheels = list((tmp_path/'dist').glob('pet_breeds-*.whl'))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z: names = set(z.namelist())
    shipped = {n.removeprefix('pet_breeds/sample/images/') for n in names if n.startswith('pet_breeds/sample/images/')}
    assert shipped == {f.name for f in sample_path().iterdir()} and len(shipped) == 370
    assert {'pet_breeds/sample/README.md', 'pet_breeds/sample/LICENSE'} <= names
    assert {'pet_breeds/__init__.py', 'pet_breeds/data.py', 'pet_breeds/train_cli.py'} <= names   # the package itself, too
    with zipfile.ZipFile(wheels[0]) as z:
        assert z.read('pet_breeds/sample/images/pug_127.jpg') == (sample_path()/'pug_127.jpg').read_bytes()
        entry_points = next(z.read(n).decode() for n in names if n.endswith('.dist-info/entry_points.txt'))
    assert 'pet_breeds_sample = pet_breeds.data:sample_main' in entry_points
    assert 'recursive-include pet_breeds/sample' in (ROOT/'MANIFEST.in').read_text()   # the sdist carries it too
