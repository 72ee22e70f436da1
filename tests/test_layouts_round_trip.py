"""The sorter's OUT is a training set (issue 29): `detect_layout(OUT)` reads it as a folder per class whose labels are
the sorter's predictions (`_unsure/`, `_rejected/` and predictions.csv are never data), and `pets_dataloaders` builds
from it. Class names are data: Unicode, spaces, mixed case; a class that cannot be a folder of OUT is refused."""
import json, shutil
from collections import Counter
from pathlib import Path
import pytest
from conftest import SAMPLE
from pet_breeds.core import BadImage, open_image
from pet_breeds.data import pets_dataloaders
from pet_breeds.files import CSV_NAME, PredictionsCSV
from pet_breeds.inference import load_model
from pet_breeds.layout import BadLayout, detect_layout
from pet_breeds.sort import REJECTED, UNSURE, Sorter, sort_images

# the tiny model's three breeds, renamed as a user's classes may be named
RENAMED = {'Abyssinian': 'Chat abyssin', 'Bengal': 'Bengal 猫', 'american_bulldog': 'Bulldog Américain'}

def check_round_trip(out:Path) -> dict:
    "`detect_layout(out)` is the folder-per-class layout of the CSV's sorted rows; `pets_dataloaders` builds from it."
    rows = PredictionsCSV(out/CSV_NAME).rows()
    sorted_rows = [r for r in rows if r['status'] == 'sorted']
    assert {r['status'] for r in rows} == {'sorted', 'unsure', 'rejected'}   # the folders the layout must skip are there
    assert (out/UNSURE).is_dir() and (out/REJECTED).is_dir()
    lay = detect_layout(out)
    assert lay.kind == 'folders' and lay.root == out
    assert lay.labels == {out/r['destination']: r['label'] for r in sorted_rows}
    assert lay.classes == sorted({r['label'] for r in sorted_rows})
    # the folder too: pets_dataloaders(layout=lay) alone looks for PETS as well (its `ifnone` computes find_layout(None))
    dls = pets_dataloaders(out, layout=lay, bs=4, item_size=64, size=32, num_workers=0, cache=False)
    assert list(dls.vocab) == lay.classes
    assert sorted(map(Path, dls.train_ds.items + dls.valid_ds.items)) == lay.files
    return lay

def test_the_sorters_out_is_a_training_set_with_a_small_model(tiny_model, tmp_path):
    "The tiny model, its classes renamed (in its model.json) to Unicode with spaces and mixed case; photos likewise."
    model = tmp_path/'model'
    shutil.copytree(tiny_model[0], model)
    meta = json.loads((model/'model.json').read_text())
    (model/'model.json').write_text(json.dumps({**meta, 'vocab': [RENAMED[c] for c in meta['vocab']]}))
    pm = load_model(model, precision='fp32')
    photos = sorted(SAMPLE.glob('*_1[0-9].jpg'))   # 10 of each breed
    predicted = [r['top'][0][0] for r in pm.predict_many(photos, names=[p.name for p in photos])]
    # up to 6 photos of each predicted class with at least 4: more than a random 20% validation split of 18 can take,
    # so every class keeps photos to train on, however the tiny model predicts
    per = Counter(predicted)
    keep = [p for c in per if per[c] >= 4 for p in [p for p, l in zip(photos, predicted) if l == c][:6]]
    assert keep, per
    inc, out = tmp_path/'incoming', tmp_path/'OUT'
    inc.mkdir()
    for i, p in enumerate(keep): shutil.copy(p, inc/f'Foto {i} ñ.jpg')
    (inc/'notes.jpg').write_text('not a photo')   # goes to _rejected/
    assert sort_images(pm, inc, out, min_prob=0)['sorted'] == len(keep)
    later = tmp_path/'later'
    later.mkdir()
    shutil.copy(SAMPLE/'Bengal_20.jpg', later/'Foto later.jpg')
    assert sort_images(pm, later, out, min_prob=1)['unsure'] == 1   # a second run into the same OUT
    lay = check_round_trip(out)
    assert set(lay.classes) <= set(RENAMED.values()) and len(lay.labels) == len(keep)

class RoundRobin:
    "A stand-in model whose classes are awkward names: photo i gets class i mod n (prob 0.9); `unsure` names get 0.1."
    vocab = ['Chat tigré', 'bengal CAT', '猫 neko', 'Dog  two spaces']
    def __init__(self, unsure=()): self.n, self.unsure = 0, set(unsure)
    def predict_many(self, items, k=3, bs=64, names=None, tta=None):
        res = []
        for item, name in zip(items, names):
            try: open_image(item, name)
            except BadImage as e:
                res.append({'file': name, 'error': str(e)})
                continue
            c = self.vocab[self.n % len(self.vocab)]
            self.n += 1
            res.append({'file': name, 'top': [(c, 0.1 if name in self.unsure else 0.9)]})
        return res

def test_the_sorters_out_is_a_training_set_for_every_class(tmp_path):
    "Four classes, each a folder named exactly as the class, read back with the sorted photos as their labels."
    inc = tmp_path/'incoming'
    inc.mkdir()
    for i, p in enumerate(sorted(SAMPLE.glob('Bengal_*.jpg'))[:18]): shutil.copy(p, inc/f'IMG {i:02d}.jpg')
    (inc/'notes.jpg').write_text('not a photo')
    res = sort_images(RoundRobin(unsure=['IMG 17.jpg']), inc, tmp_path/'OUT')
    assert (res['sorted'], res['unsure'], res['rejected']) == (17, 1, 1)
    lay = check_round_trip(tmp_path/'OUT')
    assert lay.classes == sorted(RoundRobin.vocab)
    assert {d.name for d in (tmp_path/'OUT').iterdir() if d.is_dir()} == {*RoundRobin.vocab, UNSURE, REJECTED}

@pytest.mark.parametrize('bad', ['..', '.', 'a/b', 'a\\b', '', ' ', 'x\ny', 'x\u2028y', '_unsure', '_rejected',
                                 '.hidden', 'predictions.csv', 'CON', 'x' * 256])
def test_a_class_that_cannot_be_a_folder_of_out_is_refused_before_anything_is_written(tmp_path, bad):
    inc = tmp_path/'incoming'
    inc.mkdir()
    shutil.copy(SAMPLE/'Bengal_10.jpg', inc/'a.jpg')
    class Bad(RoundRobin): vocab = ['Bengal', bad]
    with pytest.raises(BadLayout, match="^the model's classes: ") as e: sort_images(Bad(), inc, tmp_path/'OUT')
    assert '\n' not in str(e.value)
    assert not (tmp_path/'OUT').exists() and sorted(p.name for p in tmp_path.iterdir()) == ['incoming']
    assert [p.name for p in inc.iterdir()] == ['a.jpg']

def test_classes_one_folder_apart_on_a_case_insensitive_disk_are_refused(tmp_path):
    class Twins(RoundRobin): vocab = ['Cat', 'cat']
    with pytest.raises(BadLayout, match="differ only in case"): Sorter(Twins(), tmp_path/'OUT')
    assert not (tmp_path/'OUT').exists()
