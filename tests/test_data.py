"Labels, the PETS folder resolution, the file scan and the DataBlock."
import io, os, shutil
from collections import Counter
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from pet_breeds.core import BREEDS, CAT_BREEDS, DOG_BREEDS, breed_label, species_label, DataNotFound, BadImage
from conftest import SAMPLE_COUNTS, SAMPLE_IMAGES, copy_photos, run_cli
from pet_breeds.data import (pets_images_path, scan_images, pets_dataloaders, ENV_VAR, ResizeCache, LoadImage,
                             fit_workers)

def test_all_37_breeds_parse_from_file_names():
    assert len(BREEDS) == 37 and len(set(BREEDS)) == 37
    for b in BREEDS:
        for n in (1, 12, 200):
            assert breed_label(f'{b}_{n}.jpg') == b
            assert breed_label(Path('/x/images')/f'{b}_{n}.jpg') == b
    for multi in ('american_pit_bull_terrier', 'Egyptian_Mau', 'British_Shorthair', 'staffordshire_bull_terrier'):
        assert breed_label(f'{multi}_191.jpg') == multi

def test_species_from_capitalisation():
    assert {species_label(f'{b}_3.jpg') for b in CAT_BREEDS} == {'cat'}
    assert {species_label(f'{b}_3.jpg') for b in DOG_BREEDS} == {'dog'}

def test_names_outside_the_pattern_are_rejected_by_name():
    with pytest.raises(BadImage, match='holiday.png'): breed_label('holiday.png')

def test_split_does_not_depend_on_directory_order(tmp_path, synthetic_pets):
    "A copy made in reverse order (so listdir order differs) splits identically: the files are sorted."
    other = tmp_path/'reversed'; other.mkdir()
    for f in sorted(synthetic_pets.iterdir(), reverse=True): shutil.copy(f, other/f.name)
    a = pets_dataloaders(synthetic_pets, bs=8, item_size=48, size=32, num_workers=0)
    b = pets_dataloaders(other, bs=8, item_size=48, size=32, num_workers=0)
    assert [p.name for p in a.valid_ds.items] == [p.name for p in b.valid_ds.items]

def _save(img, path, fmt): img.save(path, format=fmt)

@pytest.fixture
def odd_folder(synthetic_pets):
    "The oddities of the real PETS folder, made by hand."
    d = synthetic_pets
    _save(Image.new('RGBA', (40, 40), (255, 0, 0, 128)), d/'Bengal_900.jpg', 'PNG')      # PNG under .jpg
    _save(Image.new('P', (40, 40)), d/'Bengal_901.jpg', 'GIF')                         # GIF under .jpg
    _save(Image.new('L', (40, 40), 128), d/'beagle_900.jpg', 'JPEG')                    # grayscale
    _save(Image.new('CMYK', (40, 40), (0, 50, 100, 0)), d/'beagle_901.jpg', 'JPEG')     # CMYK
    good = (d/'pug_1.jpg').read_bytes()
    (d/'pug_900.jpg').write_bytes(good[:len(good)//3])                                 # corrupt (truncated) JPEG
    (d/'pug_901.jpg').write_bytes(b'\xff\xd8\xff' + os.urandom(500))                   # garbage after a JPEG marker
    (d/'Sphynx_900.mat').write_bytes(b'MATLAB 5.0 MAT-file')                          # annotation file
    return d

def test_scan_reports_every_odd_file(odd_folder):
    rep = scan_images(odd_folder)
    skipped = {Path(o['file']).name: o['reason'] for o in rep.skipped}
    assert set(skipped) == {'pug_900.jpg', 'pug_901.jpg', 'Sphynx_900.mat'}
    assert 'not an image file' in skipped['Sphynx_900.mat']
    assert skipped['pug_900.jpg'].startswith('unreadable image (image file is truncated')
    assert skipped['pug_901.jpg'].startswith(('unreadable image', 'not an image file'))
    converted = {Path(o['file']).name: o['format'] for o in rep.converted}
    assert converted == {'Bengal_900.jpg': 'PNG RGBA', 'Bengal_901.jpg': 'GIF P',
                         'beagle_900.jpg': 'JPEG L', 'beagle_901.jpg': 'JPEG CMYK'}
    assert len(rep.images) == 96 + 4

def test_training_on_odd_files_does_not_crash_and_reports_them(odd_folder, tmp_path):
    from pet_breeds.train_cli import train_pets
    m = train_pets(odd_folder, tmp_path/'run', arch='resnet18', pretrained=False, freeze_epochs=1, epochs=1,
                   lr=1e-3, size=32, item_size=48, bs=16, num_workers=0)
    assert m['data_report']['images'] == 100
    assert {o['file'] for o in m['data_report']['skipped']} == {'pug_900.jpg', 'pug_901.jpg', 'Sphynx_900.mat'}
    assert all(o['reason'] for o in m['data_report']['skipped'])
    assert len(m['epochs']) == 2

def test_real_sample_oddities(sample_dir):
    rep = scan_images(sample_dir)
    assert len(rep.images) == SAMPLE_IMAGES and Counter(breed_label(f) for f in rep.images) == SAMPLE_COUNTS
    assert [Path(o['file']).name for o in rep.skipped] == ['Abyssinian_100.mat']
    assert 'not an image file' in rep.skipped[0]['reason']
    fmts = {Path(o['file']).name: o['format'] for o in rep.converted}
    assert fmts['Abyssinian_34.jpg'] == 'GIF P' and fmts['Abyssinian_5.jpg'] == 'PNG RGBA'
    dls = pets_dataloaders(sample_dir, bs=16, item_size=96, size=64, num_workers=0)
    # the GIF and the RGBA PNG load as 3-channel images
    for name in ('Abyssinian_34.jpg', 'Abyssinian_5.jpg'):
        i = [p.name for p in dls.train_ds.items + dls.valid_ds.items].index(name)
        ds = dls.train_ds if i < len(dls.train_ds) else dls.valid_ds
        img, _ = ds[i if i < len(dls.train_ds) else i - len(dls.train_ds)]
        assert img.mode == 'RGB'

def test_path_resolution_order(tmp_path, sample_dir, monkeypatch):
    root = tmp_path/'oxford-iiit-pet'; root.mkdir(); (root/'images').symlink_to(sample_dir, target_is_directory=True)
    monkeypatch.setenv(ENV_VAR, str(root))
    assert pets_images_path() == root/'images'                    # env var, dataset root form
    monkeypatch.setenv(ENV_VAR, str(sample_dir))
    assert pets_images_path() == sample_dir                       # env var, the images folder itself
    monkeypatch.setenv(ENV_VAR, str(root))
    assert pets_images_path(tmp_path) == tmp_path                 # an explicit path wins over the env var
    monkeypatch.setenv(ENV_VAR, str(tmp_path/'nope'))
    with pytest.raises(DataNotFound, match=ENV_VAR): pets_images_path()

def test_a_missing_named_folder_names_the_three_ways(tmp_path):
    """`$PET_BREEDS_DATA` naming a folder that is not there: one clear error, no traceback, and the bundled sample
    does not stand in for what the user named (without any data the command trains on the sample:
    tests/readme_install.py)."""
    r = run_cli('pet_breeds_train', '--out', tmp_path/'out', env={ENV_VAR: tmp_path/'nope', 'FASTAI_HOME': tmp_path/'fastai'})   # env: a process (fastai reads FASTAI_HOME once)
    assert r.returncode != 0
    assert 'Traceback' not in r.stderr
    for needle in (str(tmp_path/'nope'), '--data DIR', ENV_VAR, 'untar_data(URLs.PETS)', 'oxford-iiit-pet.tgz', str(tmp_path/'fastai')):
        assert needle in r.stderr, (needle, r.stderr)
    assert not (tmp_path/'out'/'model').exists()


# --- the pre-sized cache -------------------------------------------------------------------------

def test_cache_fills_once_then_hits_and_is_keyed_by_content(synthetic_pets, tmp_path):
    root = tmp_path/'cache'
    a = pets_dataloaders(synthetic_pets, bs=8, item_size=40, size=32, num_workers=0, cache=root)
    assert (a.report.cache['hits'], a.report.cache['misses']) == (0, 96)
    copies = sorted((root/'resized'/'v1'/'40').glob('*.jpg'))
    assert len(copies) == 96 and not list((root/'resized'/'v1'/'40').glob('.*'))   # no temporary files left
    assert all(min(Image.open(c).size) == 40 for c in copies[:5])
    b = pets_dataloaders(synthetic_pets, bs=8, item_size=40, size=32, num_workers=0, cache=root)
    assert (b.report.cache['hits'], b.report.cache['misses']) == (96, 0)
    # another item size is another cache; changed bytes are a new entry, the old file's copy stays valid
    f = synthetic_pets/'pug_3.jpg'
    Image.open(f).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(f, quality=90)
    c = pets_dataloaders(synthetic_pets, bs=8, item_size=40, size=32, num_workers=0, cache=root)
    assert (c.report.cache['hits'], c.report.cache['misses']) == (95, 1)
    assert c.report.cached[f] != b.report.cached[f] and b.report.cached[f].exists()
    # the training set reads the copies, the validation set never does
    loader = [t for t in c.train_ds.tls[0].tfms.fs if isinstance(t, LoadImage)][0]
    assert set(loader.cached) == set(c.train_ds.items) and not set(loader.cached) & set(c.valid_ds.items)
    assert pets_dataloaders(synthetic_pets, bs=8, item_size=40, size=32, num_workers=0, cache=False).report.cache == {}

def _batch(dl, seed=0, n=8):
    from fastai.vision.all import set_seed, fa_collate
    for f in (dl.after_item, dl.after_batch): f.split_idx = dl.dataset.split_idx
    set_seed(seed)
    items = [dl.do_item(i) for i in range(min(n, len(dl.dataset)))]
    return items, dl.after_batch(fa_collate(items))[0]

@pytest.fixture(scope='module')
def few_real(tmp_path_factory):
    return copy_photos(tmp_path_factory.mktemp('few')/'images', 6)

def test_cached_batches_match_uncached(few_real, tmp_path):
    kw = dict(bs=8, item_size=96, size=64, num_workers=0)
    cached, plain = pets_dataloaders(few_real, cache=tmp_path/'c', **kw), pets_dataloaders(few_real, cache=False, **kw)
    (ci, cx), (pi, px) = _batch(cached.train), _batch(plain.train)
    diff = (cx - px).abs().mean().item()
    other = (_batch(plain.train, seed=1)[1] - px).abs().mean().item()
    assert diff < 0.03 and other > 5 * diff, (diff, other)
    (vc, vcx), (vp, vpx) = _batch(cached.valid), _batch(plain.valid)
    assert torch.equal(vcx, vpx), 'validation must read the originals, exactly as predict does'

def test_a_damaged_copy_falls_back_to_the_original(few_real, tmp_path):
    dls = pets_dataloaders(few_real, bs=8, item_size=96, size=64, num_workers=0, cache=tmp_path/'c')
    f = dls.train_ds.items[0]
    copy = dls.report.cached[f]
    copy.write_bytes(copy.read_bytes()[:100])                      # what a torn write would leave
    img, _ = dls.train_ds[0]
    assert img.size == Image.open(f).size                           # the original, opened by open_image

def test_an_interrupted_write_leaves_no_trusted_file(tmp_path, monkeypatch):
    from pet_breeds.core import open_image
    rc = ResizeCache(32, root=tmp_path)
    img = open_image(Image.new('RGB', (64, 48), 'red'))
    def crash(src, dst): raise KeyboardInterrupt
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt): rc.put('k', img)
    assert not rc.path('k').exists()
    monkeypatch.undo()
    assert rc.put('k', img) == rc.path('k') and Image.open(rc.path('k')).size == (43, 32)

def test_an_unwritable_cache_only_warns(synthetic_pets, tmp_path):
    blocker = tmp_path/'file'; blocker.write_text('not a folder')
    with pytest.warns(UserWarning, match='going on without it'):
        dls = pets_dataloaders(synthetic_pets, bs=8, item_size=40, size=32, num_workers=0, cache=blocker)
    assert len(dls.report.images) == 96 and dls.report.cached == {}
    assert dls.one_batch()[0].shape == (8, 3, 32, 32)

def test_worker_count_fits_the_machine():
    assert [fit_workers(c) for c in (1, 2, 8, 64)] == [0, 1, 7, 8]
