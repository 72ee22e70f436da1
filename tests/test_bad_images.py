"""Bad images everywhere an image enters: one opener (`core.open_image`) for training, predict, sort and the widget.

A generated folder holds every case; the scan keeps what can be read (and says what it changed),
leaves out the rest with the file's name and the reason, and the DataLoaders build and train on it.
A property-based test feeds random and mutated bytes to the opener."""
import io, os, struct, zlib
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from hypothesis import given, settings, strategies as st, HealthCheck
import pet_breeds.core as core
from pet_breeds.core import BadImage, open_image, image_origin, breed_label, species_label, MAX_IMAGE_BYTES
from pet_breeds.data import scan_images, pets_dataloaders, LoadImage
from pet_breeds.runtime import topk_in_batches
from pet_breeds.widget import open_upload

def _bytes(im, fmt, **kw) -> bytes:
    b = io.BytesIO(); im.save(b, format=fmt, **kw); return b.getvalue()

def _photo(w=64, h=48, seed=0) -> Image.Image:
    "A photo-like image whose left half is red and right half blue, so orientation can be checked."
    a = np.zeros((h, w, 3), np.uint8); a[:, :w//2] = (230, 30, 30); a[:, w//2:] = (30, 30, 230)
    a = np.clip(a + np.random.default_rng(seed).normal(0, 8, a.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(a)

def bomb_png(w=40000, h=40000) -> bytes:
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IEND', b'')

def _exif_rotated() -> bytes:
    "The photo stored as a phone stores an upright shot: sideways, with EXIF orientation 6."
    exif = Image.Exif(); exif[0x0112] = 6
    return _bytes(_photo().transpose(Image.Transpose.ROTATE_90), 'JPEG', exif=exif.tobytes(), quality=95)

# name -> bytes (or a callable making the entry) and what the scan must say
GOOD = {  # readable: (format mode, fixes)
    'Bengal_1.jpg': (lambda: _bytes(_photo(), 'JPEG', quality=90), 'JPEG RGB', []),
    'Bengal_2.JPG': (lambda: _bytes(_photo(seed=2), 'JPEG'), 'JPEG RGB', []),                    # upper-case extension
    'Bengal_3.jpeg': (lambda: _bytes(_photo(seed=3), 'JPEG'), 'JPEG RGB', []),
    'Bengal_4.png': (lambda: _bytes(_photo(seed=4), 'PNG'), 'PNG RGB', []),                       # other extensions
    'Bengal_5.webp': (lambda: _bytes(_photo(seed=5), 'WEBP'), 'WEBP RGB', []),
    'Bengal_6.jpg': (lambda: _bytes(_photo(seed=6).convert('RGBA'), 'PNG'), 'PNG RGBA', ['transparency composited on white']),  # PNG under .jpg, alpha
    'Bengal_7.jpg': (lambda: _bytes(_photo(seed=7).convert('P'), 'GIF'), 'GIF P', ['P converted to RGB']),  # GIF under .jpg
    'pug_1.jpg': (lambda: _bytes(_photo(seed=8).convert('CMYK'), 'JPEG'), 'JPEG CMYK', ['CMYK converted to RGB']),
    'pug_2.jpg': (lambda: _bytes(_photo(seed=9).convert('L'), 'JPEG'), 'JPEG L', ['L converted to RGB']),
    'pug_3.png': (lambda: _bytes(Image.fromarray(np.full((48, 64), 40000, np.uint16)), 'PNG'), 'PNG I;16', ['I;16 scaled to 8 bit']),
    'pug_4.jpg': (_exif_rotated, 'JPEG RGB', ['EXIF orientation 6 applied']),
    'pug_5.gif': (lambda: _bytes(_photo(seed=10), 'GIF', save_all=True,
                                 append_images=[Image.new('RGB', (64, 48), c) for c in ('green', 'yellow')]), 'GIF P', ['first frame of 3', 'P converted to RGB']),
}
BAD = {  # left out: a fragment of the reason
    'pug_10.jpg': (b'', 'empty file'),
    'pug_11.jpg': (lambda: os.urandom(3000), 'not an image file'),
    'pug_12.jpg': (lambda: _bytes(_photo(), 'JPEG')[:400], 'unreadable image ('),
    'pug_13.png': (bomb_png, 'refused as a possible decompression bomb'),
    'pug_14.jpg': ('too big', 'file too large'),
    'pug_15.jpg': ('dangling', 'dangling symbolic link'),
    'pug_16.jpg': ('unreadable', 'cannot read the file (Permission denied)'),
    'pug_17.jpg': ('fifo', 'not a regular file'),
    'pug_18.heic': (b'\0\0\0\x18ftypheic', 'not an image file (extension .heic)'),
    'pug_19.mat': (b'MATLAB 5.0 MAT-file', 'not an image file (extension .mat)'),
}

@pytest.fixture
def bad_folder(tmp_path, monkeypatch):
    "Every case beside a few ordinary photos, and `open` refusing one file as a permission error would."
    d = tmp_path/'images'; d.mkdir()
    for i in range(8):
        for breed in ('Bengal', 'pug'): (d/f'{breed}_{100+i}.jpg').write_bytes(_bytes(_photo(seed=100+i), 'JPEG'))
    for name, (make, *_) in {**GOOD, **BAD}.items():
        f = d/name
        if make == 'too big':
            with open(f, 'wb') as fh: fh.truncate(MAX_IMAGE_BYTES + 1)   # sparse: nothing is written or read
        elif make == 'dangling': os.symlink(d/'gone.jpg', f)
        elif make == 'fifo': os.mkfifo(f)                                 # reading it would block forever
        elif make == 'unreadable': f.write_bytes(_bytes(_photo(), 'JPEG'))  # a good photo that `open` refuses
        else: f.write_bytes(make() if callable(make) else make)
    real_open = open
    def refusing_open(file, *a, **kw):  # root reads a chmod 000 file, so refuse it here
        if Path(str(file)).name == 'pug_16.jpg': raise PermissionError(13, 'Permission denied', str(file))
        return real_open(file, *a, **kw)
    monkeypatch.setattr(core, 'open', refusing_open, raising=False)
    return d

def test_scan_keeps_what_it_can_read_and_names_the_rest(bad_folder):
    rep = scan_images(bad_folder)
    skipped = {Path(o['file']).name: o['reason'] for o in rep.skipped}
    assert set(skipped) == set(BAD)
    for name, (_, why) in BAD.items(): assert why in skipped[name], (name, skipped[name])
    assert {p.name for p in rep.images} == set(GOOD) | {f'{b}_{100+i}.jpg' for b in ('Bengal', 'pug') for i in range(8)}
    conv = {Path(o['file']).name: (o['format'], o['fixes']) for o in rep.converted}
    for name, (_, fmt, fixes) in GOOD.items():
        if fmt == 'JPEG RGB' and not fixes: assert name not in conv
        else: assert conv[name] == (fmt, fixes), (name, conv[name])

def test_every_entry_point_opens_the_same_way(bad_folder):
    "predict/sort (`topk_in_batches`), the widget and the training loader agree with `open_image`."
    files = sorted(bad_folder.iterdir())
    res = topk_in_batches(files, lambda imgs, bs: torch.zeros(len(imgs), 2), lambda p, k: [('x', 0.5)], bs=8, open_item=open_image)
    errors = {Path(r['file']).name: r['error'] for r in res if 'error' in r}
    assert set(errors) == set(BAD)
    assert 'not an image file' in errors['pug_18.heic']   # predict reads by content: this HEIC stub is not decodable
    assert all(e.startswith(str(bad_folder/n)) for n, e in errors.items())
    loader = LoadImage()
    for name in GOOD:
        a = open_image(bad_folder/name)
        assert a.mode == 'RGB'
        assert np.array_equal(np.asarray(loader(bad_folder/name)), np.asarray(a))
        if name != 'pug_16.jpg':
            data = (bad_folder/name).read_bytes()
            assert np.array_equal(np.asarray(open_upload(data, name)), np.asarray(a))
            assert image_origin(data, name) == a.origin

def test_the_pixels_are_right(bad_folder):
    up = open_image(bad_folder/'pug_4.jpg')             # EXIF-rotated: upright, red on the left
    assert up.size == (64, 48)
    left, right = np.asarray(up)[:, :16].mean((0, 1)), np.asarray(up)[:, -16:].mean((0, 1))
    assert left[0] > 150 > left[2] and right[2] > 150 > right[0]
    assert np.asarray(open_image(bad_folder/'pug_3.png')).mean() == pytest.approx(40000 / 257, abs=1)  # scaled, not white
    anim = np.asarray(open_image(bad_folder/'pug_5.gif'))
    assert anim[:, :16, 0].mean() > 150                   # the first frame, not the green ones
    clear_red = _bytes(Image.new('RGBA', (4, 4), (255, 0, 0, 0)), 'PNG')   # what a cut-out pet's background holds
    assert open_image(clear_red).getpixel((0, 0)) == (255, 255, 255)     # composited on white, not on black or red
    assert open_image(_bytes(Image.new('LA', (4, 4), (0, 128)), 'PNG')).getpixel((0, 0)) == (127, 127, 127)

def test_real_oddities_open_as_the_photo_they_were_made_from(odd_dir, sample_dir):
    """nbs/images/odd stores the real photo Bengal_57.jpg (downsized) the odd ways: each opens upright, in RGB, as that
    photo (a JPEG's rounding apart), not turned, clipped or with inverted inks; the tiny and the large photo open at their size."""
    photo = np.asarray(open_image(sample_dir/'Bengal_57.jpg'), dtype=float)
    grey = np.asarray(Image.open(sample_dir/'Bengal_57.jpg').convert('L'), dtype=float)[..., None]
    cases = [('cmyk.jpg', photo, 'CMYK converted to RGB'), ('exif_rotated.jpg', photo, 'EXIF orientation 6 applied'),
             ('grayscale.jpg', grey, 'L converted to RGB'), ('sixteen_bit.png', grey, 'I;16 scaled to 8 bit')]
    for name, ref, fix in cases:
        img = open_image(odd_dir/name)
        assert img.mode == 'RGB' and img.size == (photo.shape[1], photo.shape[0]), (name, img.size)
        assert img.origin['fixes'] == [fix] and image_origin((odd_dir/name).read_bytes(), name) == img.origin, (name, img.origin)
        a = np.asarray(img, dtype=float)
        # measured: 0.0-3.0 grey levels from the photo on average, and 72 from the photo turned upside down
        assert np.abs(a - ref).mean() < 10 < np.abs(a - ref[::-1, ::-1]).mean(), name
        if ref is grey: assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all(), name
    tiny, large = open_image(odd_dir/'tiny.jpg'), open_image(odd_dir/'large.jpg')
    assert (tiny.size, large.size) == ((12, 9), (1646, 1278)) and tiny.mode == large.mode == 'RGB'
    assert large.origin['fixes'] == [] and tiny.origin['fixes'] == []

def test_dataloaders_build_skip_report_and_train(bad_folder, tmp_path):
    dls = pets_dataloaders(bad_folder, bs=8, item_size=40, size=32, num_workers=0, cache=tmp_path/'cache')
    assert {Path(o['file']).name for o in dls.report.skipped} == set(BAD)
    assert dls.vocab == ['Bengal', 'pug']                   # Bengal_2.JPG and pug_3.png are labelled too
    assert len(dls.train_ds) + len(dls.valid_ds) == len(GOOD) + 16
    for dl in (dls.train, dls.valid):
        for xb, yb in dl: assert xb.shape[1:] == (3, 32, 32) and torch.isfinite(xb).all()
    again = pets_dataloaders(bad_folder, bs=8, item_size=40, size=32, num_workers=0, cache=tmp_path/'cache')
    assert again.report.cache['misses'] == 0 and again.report.skipped == dls.report.skipped
    assert again.report.converted == dls.report.converted     # a cache hit reports the same fixes

def test_labels_accept_any_case_and_image_extension():
    assert [breed_label(n) for n in ('Bengal_3.JPG', 'Bengal_3.jpeg', 'pug_7.PNG', 'pug_7.webp')] == ['Bengal', 'Bengal', 'pug', 'pug']
    assert (species_label('Bengal_3.JPG'), species_label('pug_7.png')) == ('cat', 'dog')
    for bad in ('Bengal_3xjpg', 'Bengal_3.jpg.txt', 'Bengal.jpg', 'notes.txt'):
        with pytest.raises(BadImage, match='PETS pattern'): breed_label(bad)

# --- property-based: whatever the bytes, BadImage or an RGB image, quickly ----------------------

SEEDS = [_bytes(_photo(16, 12), 'JPEG'), _bytes(_photo(16, 12).convert('RGBA'), 'PNG'), _bytes(_photo(16, 12), 'GIF'),
         _exif_rotated(), _bytes(Image.fromarray(np.full((8, 8), 300, np.uint16)), 'PNG'), _bytes(_photo(16, 12), 'WEBP'),
         _bytes(_photo(16, 12), 'BMP'), _bytes(_photo(16, 12), 'TIFF'), bomb_png(300, 300)]

def _check(data:bytes):
    try: img = open_image(data, 'fuzz.jpg', max_pixels=1_000_000)
    except BadImage as e: assert str(e).startswith('fuzz.jpg: '), e
    else: assert img.mode == 'RGB' and img.size[0] * img.size[1] <= 1_000_000

@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op, i = draw(st.sampled_from(['flip', 'cut', 'insert'])), draw(st.integers(0, len(data) - 1))
        if op == 'flip': data[i] = draw(st.integers(0, 255))
        elif op == 'cut': del data[i:i + draw(st.integers(1, 64))]
        else: data[i:i] = draw(st.binary(min_size=1, max_size=16))
        if not data: break
    return bytes(data)

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_bad_image(data): _check(data)

@FUZZ
@given(mutated())
def test_mutated_images_raise_only_bad_image(data): _check(data)
