"Interpretation numbers against hand-computed ones, and pet_breeds_interpret end to end."
import csv, json, re, shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pandas as pd, pytest, torch
from conftest import SAMPLE, run_cli
from pet_breeds.core import DataNotFound, breed_label
from pet_breeds.interpret import (per_class_scores, most_confused_pairs, PetInterpretation, confusion_layout,
                                  labels_to_score)
from pet_breeds.inference import load_model

def test_confusion_matrix_and_scores_by_hand():
    vocab = ['Abyssinian', 'Bengal', 'beagle']
    targs = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    decoded = torch.tensor([0, 0, 1, 2, 1, 0, 1, 2, 2, 2, 1, 1])
    preds = torch.nn.functional.one_hot(decoded, 3).float()
    from fastai.data.transforms import CategoryMap
    dl = SimpleNamespace(vocab=CategoryMap(vocab, sort=False))   # what a fastai DataLoader carries
    interp = PetInterpretation(SimpleNamespace(), dl, torch.zeros(12), preds, targs)
    # rows actual, columns predicted, counted by hand from the two lists above
    assert interp.confusion_matrix().tolist() == [[2, 1, 1], [1, 2, 0], [0, 2, 3]]
    pc = interp.per_class().set_index('class')
    assert pc.loc['Bengal', ['support', 'tp', 'fp', 'fn']].tolist() == [3, 2, 3, 1]
    assert pc.loc['Bengal', 'precision'] == pytest.approx(2/5)
    assert pc.loc['Bengal', 'recall'] == pytest.approx(2/3)
    assert pc.loc['Bengal', 'accuracy'] == pytest.approx((2 + 6) / 12)     # TN = 12 - 2 - 3 - 1
    assert pc.loc['beagle', ['precision', 'recall']].tolist() == pytest.approx([3/4, 3/5])
    mc = interp.most_confused_df()
    assert mc.values.tolist()[0] == ['beagle', 'Bengal', 2]
    assert sorted(map(tuple, mc.values.tolist()[1:])) == [('Abyssinian', 'Bengal', 1), ('Abyssinian', 'beagle', 1), ('Bengal', 'Abyssinian', 1)]

def test_scores_handle_a_class_never_predicted():
    pc = per_class_scores([[2, 0], [1, 0]], ['a', 'b']).set_index('class')
    assert np.isnan(pc.loc['b', 'precision']) and pc.loc['b', 'recall'] == 0

def test_layout_scales_with_class_count():
    small, big = confusion_layout(2), confusion_layout(37)
    assert big['figsize'][0] > 3 * small['figsize'][0] / 1.5 and big['label_size'] < small['label_size']

def _expected_cm(model_dir, files, label=breed_label):
    "The confusion matrix counted directly from the exported model's own predictions; `label(f)` is `f`'s true class."
    pm = load_model(model_dir, precision='fp32')   # as the interpret runs below: --precision fp32
    res = pm.predict_many(files, k=1)
    cm = np.zeros((len(pm.vocab),) * 2, dtype=int)
    for f, r in zip(files, res): cm[pm.vocab.index(label(f)), pm.vocab.index(r['top'][0][0])] += 1
    return pm, cm

def test_interpret_cli_on_the_training_validation_split(tiny_model, sample_dir, tmp_path):
    model_dir, _ = tiny_model
    r = run_cli('pet_breeds_interpret', model_dir, '--data', sample_dir, '--out', tmp_path/'rep', '--precision', 'fp32')
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name for p in (tmp_path/'rep').iterdir()} == {'confusion.png', 'top_losses.png', 'most_confused.csv', 'per_class.csv'}
    valid = [sample_dir/f for f in json.loads((model_dir/'model.json').read_text())['valid_files']]
    pm, cm = _expected_cm(model_dir, valid)
    pc = pd.read_csv(tmp_path/'rep'/'per_class.csv').set_index('class')
    assert pc['support'].tolist() == cm.sum(1).tolist()
    assert pc['tp'].tolist() == np.diag(cm).tolist()
    assert pc['fp'].tolist() == (cm.sum(0) - np.diag(cm)).tolist()
    mc = pd.read_csv(tmp_path/'rep'/'most_confused.csv')
    for a, p, n in mc.values.tolist(): assert cm[pm.vocab.index(a), pm.vocab.index(p)] == n
    assert mc['count'].sum() == cm.sum() - np.trace(cm)

def test_interpret_cli_on_a_test_folder(tiny_model, sample_dir, tmp_path):
    model_dir, _ = tiny_model
    test = tmp_path/'test'; test.mkdir()
    picked = [f for f in sorted(sample_dir.glob('*.jpg')) if f.stem.endswith(('_7', '_8', '_9'))]
    for f in picked: shutil.copy(f, test/f.name)
    r = run_cli('pet_breeds_interpret', model_dir, '--test', test, '--out', tmp_path/'rep', '--top_losses', '4', '--precision', 'fp32')
    assert r.returncode == 0, r.stderr[-2000:]
    _, cm = _expected_cm(model_dir, sorted(test.iterdir()))
    pc = pd.read_csv(tmp_path/'rep'/'per_class.csv')
    assert pc['support'].sum() == len(picked) and pc['tp'].tolist() == np.diag(cm).tolist()

def test_interpret_cli_says_when_the_data_does_not_match(tiny_model, sample_dir, tmp_path):
    other = own_photos(tmp_path/'other', {'Bengal': 2})   # photos, but not the ones the model validated on
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--data', other, '--out', tmp_path/'rep')
    assert r.returncode != 0 and 'validation images are missing' in r.stderr and 'Traceback' not in r.stderr
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--data', tmp_path/'empty', '--out', tmp_path/'rep')
    assert r.returncode == 1 and 'does not exist or is not a folder' in r.stderr and 'Traceback' not in r.stderr
    (tmp_path/'empty').mkdir()
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--data', tmp_path/'empty', '--out', tmp_path/'rep')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'no photos' in r.stderr, r.stderr
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--test', tmp_path/'nowhere', '--out', tmp_path/'rep')
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"pet_breeds_interpret: --test {tmp_path/'nowhere'}: no such folder"]

# --- your own photos: the labels come from the folder's layout, never from the file names (issue 29) ---------------
def own_photos(root:Path, counts:dict, start:int=4) -> Path:
    "`root/<breed>/photo <i>.jpg`: `counts[breed]` of the committed photos of each breed, renamed to say nothing."
    for b, n in counts.items():
        (root/b).mkdir(parents=True)
        for i, f in enumerate(sorted(SAMPLE.glob(f'{b}_*.jpg'))[start:start + n]):
            shutil.copy(f, root/b/f'photo {i}.jpg')
    return root

def _by_folder(f): return Path(f).parent.name

def _check_report(rep:Path, model_dir, files, label, counts:dict):
    "per_class.csv's support is `counts` (class -> photos, the rest 0) and its TP and FP the model's own predictions'."
    pm, cm = _expected_cm(model_dir, files, label)
    pc = pd.read_csv(rep/'per_class.csv').set_index('class')
    assert pc['support'].to_dict() == {c: counts.get(c, 0) for c in pm.vocab}
    assert pc['tp'].tolist() == np.diag(cm).tolist() and pc['fp'].tolist() == (cm.sum(0) - np.diag(cm)).tolist()

def test_interpret_cli_on_class_folders(tiny_model, tmp_path):
    counts = {'Bengal': 3, 'american_bulldog': 2, 'Abyssinian': 1}
    mine = own_photos(tmp_path/'my photos', counts)
    (mine/'_unsure').mkdir()   # the sorter's: never data
    shutil.copy(SAMPLE/'Bengal_5.jpg', mine/'_unsure'/'x.jpg')
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--test', mine, '--out', tmp_path/'rep', '--top_losses', '4',
                '--precision', 'fp32')
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r'(?<!\d)6 images, error rate', r.stdout), r.stdout   # the _unsure/ photo is not one
    _check_report(tmp_path/'rep', tiny_model[0], sorted(mine.glob('[!_]*/*.jpg')), _by_folder, counts)

def test_split_folders_are_scored_on_their_test_folder_alone(tiny_model, tmp_path):
    "Of split folders, --test scores test/: train/ and val/ are what the model learned from and was tuned on."
    meta = load_model(tiny_model[0]).meta
    split = tmp_path/'split'
    own_photos(split/'train', {'Bengal': 2, 'american_bulldog': 2})
    own_photos(split/'val', {'Bengal': 1, 'american_bulldog': 1}, start=10)
    test = own_photos(split/'test', {'Bengal': 1, 'american_bulldog': 2}, start=12)
    assert labels_to_score(meta, test=split) == {f: f.parent.name for f in test.glob('*/*.jpg')}
    shutil.rmtree(test)
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--test', split, '--out', tmp_path/'rep')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'without a test/ folder' in r.stderr
    assert not (tmp_path/'rep').exists()

def test_interpret_cli_refuses_a_class_the_model_does_not_know(tiny_model, tmp_path):
    mine = own_photos(tmp_path/'mine', {'Bengal': 2})
    (mine/'Chat tigré').mkdir()   # a class name is data: any Unicode, spaces
    shutil.copy(SAMPLE/'Bengal_5.jpg', mine/'Chat tigré'/'a.jpg')
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--test', mine, '--out', tmp_path/'rep')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [f"pet_breeds_interpret: {mine}: class 'Chat tigré' (1 photo) is not one "
                                             f"of the model's 3 classes, so it cannot be scored: leave those photos "
                                             f"out, or score a model trained on it"]

def test_interpret_cli_reads_a_csv_of_labels(tiny_model, tmp_path):
    flat = tmp_path/'flat'
    flat.mkdir()
    picked = sorted(SAMPLE.glob('*_2?.jpg'))[:5]
    for i, f in enumerate(picked): shutil.copy(f, flat/f'img{i}.jpg')
    true = {f'img{i}.jpg': breed_label(f) for i, f in enumerate(picked)}
    (flat/'labels.csv').write_text('file,label\n' + ''.join(f'{n},{b}\n' for n, b in true.items()))
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--test', flat, '--labels', flat/'labels.csv',
                '--out', tmp_path/'rep', '--top_losses', '2', '--precision', 'fp32')
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(flat.glob('*.jpg'))
    _check_report(tmp_path/'rep', tiny_model[0], files, lambda f: true[Path(f).name], Counter(true.values()))

def test_the_validation_photos_are_found_in_class_folders(tiny_model, tmp_path):
    "A model trained on class folders lists its validation photos as `<class>/<photo>`: --data finds them there."
    data = own_photos(tmp_path/'data', {'Bengal': 2, 'american_bulldog': 2, 'Abyssinian': 2})
    valid = ['Bengal/photo 1.jpg', 'american_bulldog/photo 0.jpg', 'american_bulldog/photo 1.jpg']
    meta = {**load_model(tiny_model[0]).meta, 'valid_files': valid}
    assert labels_to_score(meta, data) == {data/v: v.split('/')[0] for v in valid}
    with pytest.raises(DataNotFound, match="3 of the model's 3 validation images are missing"):
        labels_to_score(meta, own_photos(tmp_path/'other', {'Abyssinian': 2}))

def test_a_species_model_reads_pets_names_as_species_and_class_folders_as_they_are(tmp_path):
    "`--label species` applies to PETS names only: a species model reads cat/dog from them, class folders as named."
    meta = {'label': 'species', 'vocab': ['cat', 'dog'], 'valid_files': []}
    pets = tmp_path/'pets'
    pets.mkdir()
    for n in ('Bengal_1.jpg', 'american_bulldog_10.jpg'): shutil.copy(SAMPLE/n, pets/n)
    assert labels_to_score(meta, test=pets) == {pets/'Bengal_1.jpg': 'cat', pets/'american_bulldog_10.jpg': 'dog'}
    mine = own_photos(tmp_path/'mine', {'Bengal': 1})
    (mine/'Bengal').rename(mine/'cat')
    assert labels_to_score(meta, test=mine) == {mine/'cat'/'photo 0.jpg': 'cat'}
