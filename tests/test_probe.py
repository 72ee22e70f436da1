"""The small-data path: `--mode auto` choosing the probe, cross-validation with an interval, the refit on every
image, the held-back predictions and the exported probe model (PyTorch and ONNX). The README's first command, offline on
the bundled sample, is checked once, by tests/readme_install.py in the README-only environment."""
import csv, json, shutil
from pathlib import Path
import numpy as np, pytest, torch
from conftest import run_cli
from pet_breeds import probe, probe_cv
from pet_breeds.core import breed_label
from pet_breeds.data import sample_path
from pet_breeds.train_cli import train_pets, mode_choices
from pet_breeds.inference import load_model, read_meta
from pet_breeds.deploy import export_onnx

BREEDS = ('Abyssinian', 'Bengal', 'beagle')

@pytest.fixture(scope='module')
def small(tmp_path_factory):
    "Three breeds of the bundled sample, ten photos each: 10 per class, the small-data case."
    d = tmp_path_factory.mktemp('small')/'images'; d.mkdir()
    for b in BREEDS:
        for f in sorted(sample_path().glob(f'{b}_*.jpg')): shutil.copy(f, d/f.name)
    return d

@pytest.fixture(scope='module')
def probe_run(small, tmp_path_factory):
    out = tmp_path_factory.mktemp('run')/'probe'
    m = train_pets(small, out, arch='efficientnet_lite0', size=96, holdout=2, bs=16, num_workers=0,
                   cache_dir=out.parent/'cache')
    return out, m

def test_auto_picks_the_probe_on_small_data_and_says_why(probe_run):
    out, m = probe_run
    assert m['mode'] == 'probe' and m['settings']['mode'] == 'probe'
    assert m['mode_reason'].startswith('10.0 images per class')
    assert m['weights'] == 'ImageNet weights: efficientnet_lite0 (PyPI package)'

def test_auto_picks_finetune_on_pets_sized_data_or_without_pretrained_weights(small, tmp_path, monkeypatch):
    "The chooser's other branches, without training: the trainer it would hand over to is recorded by a spy."
    from pet_breeds import train_cli as cli
    seen = []
    def spy(mode):
        seen.append(mode)
        raise RuntimeError('stop here')
    monkeypatch.setattr(cli, 'get_mode', spy)
    with pytest.raises(RuntimeError, match='stop here'): train_pets(small, tmp_path/'a', pretrained=False)
    monkeypatch.setattr(probe, 'FINETUNE_MIN_PER_CLASS', 10)       # 10 per class now counts as "enough to fine-tune"
    monkeypatch.setattr(probe, 'weights_here', lambda arch: True)   # as where ResNet50's weights were downloaded
    with pytest.raises(RuntimeError, match='stop here'): train_pets(small, tmp_path/'b')
    monkeypatch.setattr(probe, 'weights_here', lambda arch: False)  # offline: the probe is the best model at hand
    with pytest.raises(RuntimeError, match='stop here'): train_pets(small, tmp_path/'c')
    assert seen == ['finetune', 'finetune', 'probe']

def test_cross_validation_reports_an_interval_and_covers_every_image(probe_run):
    out, m = probe_run
    cv = m['cv']
    assert cv['images'] == 28 and cv['folds'] == 5 and len(cv['fold_accuracy']) == 5
    lo, hi = cv['interval95']
    assert 0 <= lo < cv['accuracy'] < hi <= 1 and hi - lo > 0.1        # 28 images: a wide interval, honestly
    assert [lo, hi] == pytest.approx(list(probe_cv.wilson_interval(round(cv['accuracy']*28), 28)))
    assert np.array(m['confusion']['matrix']).sum() == 28             # each image predicted once, out of fold
    assert cv['accuracy'] > 0.6                                        # chance is 1/3: the features carry the breeds
    assert cv['species_accuracy'] >= cv['accuracy']                    # a right breed is a right species
    saved = json.loads((out/'metrics.json').read_text())
    assert saved['cv']['interval95'] == cv['interval95'] and saved['candidates'][0]['backbones'] == ['efficientnet_lite0']

def test_refit_learns_from_every_image_and_the_held_back_ones_are_predicted(probe_run, small):
    out, m = probe_run
    assert m['refit'] and m['trained_on'] == 28
    rows = list(csv.DictReader(open(out/'predictions.csv')))
    assert len(rows) == 2 and len({breed_label(r['file']) for r in rows}) == 2
    assert read_meta(out/'model')['valid_files'] == [r['file'] for r in rows]
    model = load_model(out/'model', precision='fp32')   # as the probe's own predictions, fp32
    for r in rows: assert model.predict(small/r['file'], k=1)[0][0] == r['predicted']

def test_no_refit_keeps_the_validation_split(small, tmp_path):
    m = train_pets(small, tmp_path/'r', arch='efficientnet_lite0', size=96, refit=False, bs=16, num_workers=0,
                   cache_dir=tmp_path/'cache')
    meta = read_meta(tmp_path/'r'/'model')
    assert m['trained_on'] + len(meta['valid_files']) == 30 and len(meta['valid_files']) == 6   # the 20% split
    assert m['cv']['images'] == m['trained_on']                       # the estimate never sees the validation photos
    assert m['unseen']['images'] == 6
    # the validation photos' rows are the fitted head's, on the features taken while fitting: the exported model,
    # loaded from its folder, must compute them again (the same inputs, backbone_scale included)
    model = load_model(tmp_path/'r'/'model', precision='fp32')
    for r in csv.DictReader(open(tmp_path/'r'/'predictions.csv')):
        (label, p), = model.predict(small/r['file'], k=1)
        assert label == r['predicted'] and p == pytest.approx(float(r['probability']), abs=0.01), (r, label, p)

def test_the_exported_probe_is_the_fitted_one_in_pytorch_and_onnx(probe_run, small):
    out, m = probe_run
    meta = read_meta(out/'model')
    assert (meta['mode'], meta['backbones'], meta['normalize'], meta['size']) == ('probe', ['efficientnet_lite0'], None, 96)
    model = load_model(out/'model', precision='fp32')   # compared with onnxruntime, which runs fp32
    # the backbone is fed the larger input it was fitted at (PROBE_SCALE), not its training size
    assert (meta['backbone_scale'], [b.size for b in model.model.branches]) == (probe.PROBE_SCALE, [258])
    files = sorted(small.iterdir())[:6]
    p = model.probs([model_open(f) for f in files])
    assert torch.allclose(p.sum(1), torch.ones(len(files)), atol=1e-5)
    export_onnx(out/'model')
    q = load_model(out/'model', onnx=True).probs([model_open(f) for f in files])
    assert np.abs(np.asarray(q) - p.numpy()).max() < 1e-4

def model_open(f):
    from pet_breeds.core import open_image
    return open_image(f)

def test_probe_refuses_random_weights(small, tmp_path):
    r = run_cli('pet_breeds_train', '--data', small, '--out', tmp_path/'x', '--mode', 'probe', '--no_pretrained')
    assert r.returncode != 0 and 'needs pretrained weights' in r.stderr and 'Traceback' not in r.stderr
    assert set(mode_choices()) == {'auto', 'finetune', 'probe', 'features', 'cut'}
