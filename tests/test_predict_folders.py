"""pet_breeds_predict on folders and glob patterns, and its --csv table: the committed photos laid out as a user keeps
them (a folder per kind, sub-folders, files that are not photos to predict), predicted with the suite's tiny model."""
import csv, json, shutil, subprocess, sys
import pytest
from conftest import run_cli, SAMPLE_COUNTS, SAMPLE_IMAGES

CATS = ('Abyssinian', 'Bengal')
FP32 = ('--precision', 'fp32')   # the same figures whatever the batch, so a folder's rows can be compared with single files'

@pytest.fixture(scope='module')
def photos(sample_dir, tmp_path_factory):
    """tmp/photos/cats/<breed>/ and tmp/photos/dogs/ holding the 81 committed photos, and beside them what a folder's
    expansion leaves out: the .mat file, a hidden folder, `_removed/`, `_rejected/` and an unzipped archive's `__MACOSX/`."""
    root = tmp_path_factory.mktemp('predict-folders')/'photos'
    for f in sorted(sample_dir.glob('*.jpg')):
        breed = f.stem.rsplit('_', 1)[0]
        dest = root/'cats'/breed if breed in CATS else root/'dogs'
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest/f.name)
    shutil.copy(sample_dir/'Abyssinian_100.mat', root/'cats'/'Abyssinian'/'Abyssinian_100.mat')
    left_out = {'cats/.thumbs': 'Bengal_1.jpg', '_removed': 'Bengal_1.jpg', 'dogs/_rejected': 'Bengal_1.jpg',
                '__MACOSX/cats': '._Bengal_1.jpg', 'cats': '.Bengal_1.jpg'}
    for folder, name in left_out.items():
        (root/folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_dir/'Bengal_1.jpg', root/folder/name)
    return root

def expected_files(root) -> list:
    "The 81 photos under `root` in the order a folder is predicted: cats/Abyssinian/, cats/Bengal/, then dogs/, by name."
    return [str(f) for folder in (root/'cats'/'Abyssinian', root/'cats'/'Bengal', root/'dogs') for f in sorted(folder.glob('*.jpg'))]

def predict_json(model, *args) -> list:
    r = run_cli('pet_breeds_predict', model, *args, '--json', *FP32)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    return [json.loads(line) for line in r.stdout.splitlines()]

@pytest.fixture(scope='module')
def by_folder(tiny_model, photos) -> list:
    "The JSON rows of `pet_breeds_predict MODEL photos/` (k=3)."
    return predict_json(tiny_model[0], photos)

def test_a_folder_is_its_photos_at_any_depth_sorted(by_folder, photos):
    assert len(by_folder) == SAMPLE_IMAGES == sum(SAMPLE_COUNTS.values())
    assert [r['file'] for r in by_folder] == expected_files(photos)   # no hidden, set-aside or .mat file
    assert all(len(r['top']) == 3 and 'error' not in r for r in by_folder)

def test_a_folder_predicts_as_its_photos_named_one_by_one(by_folder, tiny_model, photos):
    named = predict_json(tiny_model[0], *expected_files(photos))
    assert [r['file'] for r in named] == [r['file'] for r in by_folder]
    for got, want in zip(by_folder, named):
        assert [label for label, _ in got['top']] == [label for label, _ in want['top']], got['file']
        assert max(abs(p - q) for (_, p), (_, q) in zip(got['top'], want['top'])) < 1e-4, (got, want)
    for row in by_folder[::30]:   # one photo alone, in a run of its own
        [alone] = predict_json(tiny_model[0], row['file'])
        assert alone['top'][0][0] == row['top'][0][0]

def test_glob_patterns_the_shell_left_unexpanded(by_folder, tiny_model, photos):
    files = [r['file'] for r in by_folder]
    assert [r['file'] for r in predict_json(tiny_model[0], f'{photos}/**/*.jpg')] == files   # any depth, same skips
    cats_and_dogs = predict_json(tiny_model[0], f'{photos}/c?ts', f'{photos}/dogs/american_bulldog_1[0-9].jpg')
    teens = [str(photos/'dogs'/f'american_bulldog_{i}.jpg') for i in range(10, 20) if i != 17]   # the sample has no 17
    assert [r['file'] for r in cats_and_dogs] == [f for f in files if f'{photos}/cats/' in f] + teens
    assert len(cats_and_dogs) == SAMPLE_COUNTS['Abyssinian'] + SAMPLE_COUNTS['Bengal'] + 9

def test_csv_holds_one_row_per_photo_and_the_output_is_unchanged(by_folder, tiny_model, photos, tmp_path):
    model, table = tiny_model[0], tmp_path/'predictions.csv'
    plain = run_cli('pet_breeds_predict', model, photos, '--k', '2', *FP32)
    r = run_cli('pet_breeds_predict', model, photos, '--k', '2', '--csv', table, *FP32)
    assert (r.returncode, r.stdout) == (0, plain.stdout), r.stderr[-2000:]
    assert f'pet_breeds_predict: wrote {table} ({SAMPLE_IMAGES} rows)' in r.stderr.splitlines(), r.stderr
    with open(table, newline='') as f: header, *rows = list(csv.reader(f))
    assert header == ['file', 'label', 'probability', 'label_2', 'probability_2', 'error']
    rows = [dict(zip(header, row)) for row in rows]
    assert [row['file'] for row in rows] == [r['file'] for r in by_folder]
    assert [row['label'] for row in rows] == [r['top'][0][0] for r in by_folder]   # the top-1 of the JSON run
    assert [row['label_2'] for row in rows] == [r['top'][1][0] for r in by_folder]
    for row, r in zip(rows, by_folder):
        assert abs(float(row['probability']) - r['top'][0][1]) <= 5e-5 and row['error'] == '', (row, r)
    assert sorted(tmp_path.iterdir()) == [table]   # written through a temporary file, none left

def test_csv_rows_an_unreadable_photo_and_exits_partial(tiny_model, sample_dir, tmp_path):
    folder = tmp_path/'photos'
    folder.mkdir()
    shutil.copy(sample_dir/'Bengal_10.jpg', folder/'Bengal_10.jpg')
    (folder/'notes.jpg').write_text('not a photo')
    r = run_cli('pet_breeds_predict', tiny_model[0], folder, '--csv', tmp_path/'out.csv', *FP32)
    assert r.returncode == 3, (r.returncode, r.stderr)   # EXIT_PARTIAL, as without --csv
    assert r.stdout.splitlines()[1].startswith(f"{folder/'notes.jpg'}: ERROR "), r.stdout
    with open(tmp_path/'out.csv', newline='') as f: good, bad = list(csv.DictReader(f))
    assert good['file'] == str(folder/'Bengal_10.jpg') and good['label'] and good['label_3'] and good['error'] == ''
    assert bad['file'] == str(folder/'notes.jpg') and 'notes.jpg' in bad['error']
    assert [bad[c] for c in ('label', 'probability', 'label_3', 'probability_3')] == ['', '', '', '']

@pytest.mark.parametrize('name,says', [
    ('*.png', 'matches no files'),
    ('cats/Abyssinian/*.mat', 'matches no image files (.jpg, .jpeg, .png, .gif, .bmp, .webp, .tif, .tiff)'),
    ('__MACOSX', 'no image files (.jpg, .jpeg, .png, .gif, .bmp, .webp, .tif, .tiff) in this folder or its sub-folders'),
])
def test_a_name_that_gives_no_photo_is_one_line_and_exit_1(tiny_model, photos, name, says):
    r = run_cli('pet_breeds_predict', tiny_model[0], photos/'dogs', photos/name)
    assert (r.returncode, r.stdout) == (1, ''), (r.returncode, r.stdout[-500:], r.stderr)
    assert r.stderr.strip().splitlines() == [f'pet_breeds_predict: {photos/name}: {says}'], r.stderr

def test_names_are_checked_before_the_model_loads(photos, tmp_path):
    "A pattern that matches nothing, or a --csv in no folder, is said before a missing model would be."
    r = run_cli('pet_breeds_predict', 'no/such/model', f'{photos}/*.png')
    assert r.returncode == 1 and r.stderr.strip() == f'pet_breeds_predict: {photos}/*.png: matches no files', r.stderr
    r = run_cli('pet_breeds_predict', 'no/such/model', photos, '--csv', tmp_path/'no'/'such'/'out.csv')
    assert r.returncode == 2 and r.stderr.strip() == f"pet_breeds_predict: --csv {tmp_path/'no'/'such'/'out.csv'}: no such folder", r.stderr

def test_expanding_and_the_csv_need_no_torch(photos, tmp_path):
    "Where only numpy, Pillow and onnxruntime are installed, the expansion and the CSV writer run (atomic.py included)."
    code = ("import sys\n"
            "for m in ('torch', 'torchvision', 'fastai', 'fastcore', 'timm', 'safetensors', 'pandas'): sys.modules[m] = None\n"
            "from pet_breeds.deploy import expand_images, write_csv\n"
            "files = expand_images(sys.argv[1:2])\n"
            "write_csv([{'file': f, 'top': [('Bengal', 0.5)]} for f in files], sys.argv[2], k=1)\n"
            "print(len(files))\n")
    r = subprocess.run([sys.executable, '-c', code, str(photos), str(tmp_path/'t.csv')], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, str(SAMPLE_IMAGES)), r.stderr
    assert (tmp_path/'t.csv').read_text().splitlines()[:2] == ['file,label,probability,error', f'{expected_files(photos)[0]},Bengal,0.5000,']
