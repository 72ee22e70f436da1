"Interpretation numbers against hand-computed ones, and pet_breeds_interpret end to end."
import csv, json, shutil
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pandas as pd, pytest, torch
from conftest import run_cli
from pet_breeds.core import breed_label
from pet_breeds.interpret import per_class_scores, most_confused_pairs, PetInterpretation, confusion_layout
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

def _expected_cm(model_dir, files):
    "The confusion matrix counted directly from the exported model's own predictions."
    pm = load_model(model_dir, precision='fp32')   # as the interpret runs below: --precision fp32
    res = pm.predict_many(files, k=1)
    cm = np.zeros((len(pm.vocab),) * 2, dtype=int)
    for f, r in zip(files, res): cm[pm.vocab.index(breed_label(f)), pm.vocab.index(r['top'][0][0])] += 1
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
    r = run_cli('pet_breeds_interpret', model_dir, '--test', test, '--out', tmp_path/'rep', '--k', '4', '--precision', 'fp32')
    assert r.returncode == 0, r.stderr[-2000:]
    _, cm = _expected_cm(model_dir, sorted(test.iterdir()))
    pc = pd.read_csv(tmp_path/'rep'/'per_class.csv')
    assert pc['support'].sum() == len(picked) and pc['tp'].tolist() == np.diag(cm).tolist()

def test_interpret_cli_says_when_the_data_does_not_match(tiny_model, tmp_path):
    r = run_cli('pet_breeds_interpret', tiny_model[0], '--data', tmp_path, '--out', tmp_path/'rep')
    assert r.returncode != 0 and 'validation images are missing' in r.stderr and 'Traceback' not in r.stderr
