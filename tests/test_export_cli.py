"Export/load without pickle, prediction, and the pet_breeds_train / pet_breeds_predict commands."
import json, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from conftest import run_cli, SAMPLE_IMAGES, valid_count
from pet_breeds.data import pets_dataloaders
from pet_breeds.learner import pets_learner
from pet_breeds.train import train_two_stage
from pet_breeds.inference import export_model, load_model
from pet_breeds.core import open_image

@pytest.fixture(scope='module')
def lite(sample_dir, tmp_path_factory):
    """EfficientNet-Lite0 (its ImageNet weights) after one frozen epoch on the real photos, and its export: a model
    whose probabilities differ from photo to photo, so agreeing with it means something (the tiny model is near-constant)."""
    from fastai.torch_core import set_seed
    set_seed(2, reproducible=True)
    dls = pets_dataloaders(sample_dir, bs=16, item_size=96, size=64, num_workers=0)
    learn = pets_learner(dls, 'efficientnet_lite0', pretrained=True)
    with learn.no_bar(), learn.no_logging(): train_two_stage(learn, freeze_epochs=1, epochs=0, lr=3e-3)
    dest = tmp_path_factory.mktemp('lite')/'model'
    export_model(learn, dest)
    return learn, dls, dest

def test_export_then_load_in_a_fresh_process_gives_the_same_probabilities(lite, tmp_path):
    learn, dls, dest = lite
    files = [str(f) for f in dls.valid_ds.items[:12]]
    expected, _ = learn.get_preds(dl=dls.test_dl(files))
    assert sorted(p.name for p in dest.iterdir()) == ['model.json', 'model.safetensors']
    code = ("import json, sys; from pet_breeds.inference import load_model; from pet_breeds.core import open_image\n"
            "m = load_model(sys.argv[1], precision='fp32'); p = m.probs([open_image(f) for f in sys.argv[2:]])\n"
            "print(json.dumps({'vocab': m.vocab, 'probs': p.tolist()}))")
    r = subprocess.run([sys.executable, '-c', code, str(dest), *files], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got['vocab'] == list(dls.vocab)
    torch.testing.assert_close(torch.tensor(got['probs']), expected, atol=1e-4, rtol=0)
    assert not (expected.argmax(1) == expected.argmax(1)[0]).all(), "a degenerate model would make this test vacuous"

def test_loading_never_unpickles(tiny_model, tmp_path, monkeypatch):
    import pickle
    def boom(*a, **k): raise AssertionError('unpickling during load')
    monkeypatch.setattr(pickle, 'load', boom); monkeypatch.setattr(pickle, 'loads', boom)
    monkeypatch.setattr(torch, 'load', boom)
    m = load_model(tiny_model[0])
    assert m.vocab == ['Abyssinian', 'Bengal', 'american_bulldog']

def test_predict_accepts_path_bytes_and_pil(lite, sample_dir):
    "The exported model, reloaded, gives the trained learner's probabilities (1e-4), most probable first, from a path, bytes or a PIL image."
    from PIL import Image
    learn, dls, dest = lite
    m = load_model(dest, precision='fp32')   # compared with the fp32 learner at 1e-4
    # the odd files (a GIF, an alpha PNG), and a photo of each breed so that more than one class comes out
    files = [sample_dir/n for n in ('Bengal_10.jpg', 'Abyssinian_34.jpg', 'Abyssinian_5.jpg', 'american_bulldog_100.jpg',
                                    'Bengal_12.jpg', 'american_bulldog_12.jpg', 'american_bulldog_13.jpg', 'Abyssinian_12.jpg')]
    # the photos opened as predict opens them: given paths, test_dl would read the training files' resized cached copies
    expected, _ = learn.get_preds(dl=dls.test_dl([open_image(f) for f in files]))
    assert len({int(i) for i in expected.argmax(1)}) > 1, "a near-constant model would make this test vacuous"
    for f, e in zip(files, expected):
        want = sorted(zip(dls.vocab, e.tolist()), key=lambda lp: -lp[1])
        for got in (m.predict(f, k=3), m.predict(f.read_bytes(), k=3), m.predict(Image.open(f), k=3)):
            assert [l for l, _ in got] == [l for l, _ in want], (f.name, got, want)
            np.testing.assert_allclose([p for _, p in got], [p for _, p in want], atol=1e-4, rtol=0)
        assert [l for l, _ in m.predict(f, k=2)] == [l for l, _ in want[:2]]

@pytest.fixture(scope='module')
def cli_run(tiny_run):
    """The issue's smoke run through the real command (the suite's one tiny model, conftest's `tiny_run`), on the
    committed photos less held-out ones the model never sees (not in training, not in validation)."""
    return tiny_run.result, tiny_run.out, tiny_run.held

def test_train_cli_writes_every_output(cli_run):
    r, out, held = cli_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {'model', 'metrics.json', 'lr_find.png', 'loss.png', 'confusion.png'}
    for png in ('lr_find.png', 'loss.png', 'confusion.png'): assert (out/png).read_bytes()[:4] == b'\x89PNG'
    m = json.loads((out/'metrics.json').read_text())
    assert [(e['stage'], e['epoch']) for e in m['epochs']] == [(1, 0), (2, 0)]
    for e in m['epochs']:
        assert set(e) >= {'stage', 'epoch', 'train_loss', 'valid_loss', 'error_rate', 'accuracy', 'seconds'}
        assert abs(e['error_rate'] + e['accuracy'] - 1) < 1e-6
    assert set(m['lr_find']) == {'valley', 'minimum', 'steep'} and m['lr'] == m['lr_find']['valley']
    n = SAMPLE_IMAGES - len(list(held.iterdir()))
    assert m['data_report']['images'] == n
    assert [o['file'] for o in m['data_report']['skipped']] == ['Abyssinian_100.mat']
    assert m['vocab'] == ['Abyssinian', 'Bengal', 'american_bulldog']
    assert m['total_seconds'] > 0
    cm = m['confusion']['matrix']
    assert m['confusion']['labels'] == m['vocab'] and sum(map(sum, cm)) == valid_count(n)
    assert abs(1 - sum(cm[i][i] for i in range(3)) / sum(map(sum, cm)) - m['epochs'][-1]['error_rate']) < 1e-6
    # fastprogress's table: a header per stage and a row per epoch trained, with the losses metrics.json records
    assert r.stdout.count('epoch     train_loss  valid_loss  error_rate  accuracy') == 2, r.stdout[-3000:]
    for e in m['epochs']:
        assert f"{e['epoch']:<10}{e['train_loss']:<12.6f}{e['valid_loss']:<12.6f}{e['error_rate']:<12.6f}" in r.stdout, (e, r.stdout[-3000:])
    assert f"on {valid_count(n)} validation images" in r.stdout

def test_predict_cli_on_unseen_images(cli_run):
    _, out, held = cli_run
    files = sorted(held.iterdir())
    r = run_cli('pet_breeds_predict', out/'model', *files, '--k', '2', '--json')
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert [row['file'] for row in rows] == [str(f) for f in files]
    vocab = json.loads((out/'model'/'model.json').read_text())['vocab']
    for row in rows:
        assert len(row['top']) == 2 and all(label in vocab for label, _ in row['top'])
    plain = run_cli('pet_breeds_predict', out/'model', files[0])
    assert plain.returncode == 0 and plain.stdout.startswith(f'{files[0]}: ') and '%' in plain.stdout

def test_predict_cli_reports_bad_files_and_carries_on(cli_run, tmp_path):
    _, out, held = cli_run
    bad = tmp_path/'notes.jpg'; bad.write_text('not an image')
    good = sorted(held.iterdir())[0]
    r = run_cli('pet_breeds_predict', out/'model', bad, tmp_path/'missing.jpg', good, '--json')
    assert r.returncode == 3   # EXIT_PARTIAL: the good file is predicted, the two bad ones named
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert 'error' in rows[0] and 'notes.jpg' in rows[0]['error']
    assert 'no such file' in rows[1]['error']
    assert 'top' in rows[2]

def test_predict_cli_on_a_folder_that_is_not_a_model(tmp_path):
    r = run_cli('pet_breeds_predict', tmp_path, tmp_path/'x.jpg')
    assert r.returncode != 0 and 'not an exported pet_breeds model' in r.stderr and 'Traceback' not in r.stderr

def test_cat_versus_dog_from_the_command_line(sample_dir, tmp_path):
    "The seed's binary task: --label species trains cat/dog and reports its 2x2 confusion matrix."
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'sp', '--arch', 'efficientnet_lite0',
                '--label', 'species', '--mode', 'finetune', '--freeze_epochs', '1', '--epochs', '0', '--lr', '3e-3', '--size', '128',
                '--item_size', '160', '--bs', '32')
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path/'sp'/'metrics.json').read_text())
    assert m['vocab'] == ['cat', 'dog'] and m['lr_find'] is None
    assert m['settings']['mode'] == 'finetune' and [(e['stage'], e['epoch']) for e in m['epochs']] == [(1, 0)]
    cm = m['confusion']['matrix']
    assert len(cm) == 2 and sum(map(sum, cm)) == valid_count(SAMPLE_IMAGES)
    assert (tmp_path/'sp'/'confusion.png').exists()
    assert m['epochs'][-1]['error_rate'] < 0.2      # pretrained features tell cats from bulldogs easily
    assert not (tmp_path/'sp'/'lr_find.png').exists()
