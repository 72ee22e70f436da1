"""Your own photos (issue 29): `pet_breeds_train` reads a folder per class, split folders, PETS names and a CSV, on the
committed real photos laid out each way; bad layouts are refused in one line, with nothing written."""
import json, shutil
from pathlib import Path
import pytest
from conftest import SAMPLE, run_cli
from pet_breeds.layout import detect_layout
from pet_breeds import probe

CLASSES = {'folders': ['cats', 'dogs'], 'split': ['cats', 'dogs'], 'pets': ['Abyssinian', 'Bengal', 'american_bulldog'],
           'csv': ['Hund Ä', 'chat tigré']}

def _kind(f:Path) -> str: return 'cats' if f.name[0].isupper() else 'dogs'   # PETS capitalises cats

@pytest.fixture(scope='module')
def layouts(tmp_path_factory) -> dict:
    "The 81 committed photos as each layout: kind -> (data folder, extra command-line arguments)."
    root = tmp_path_factory.mktemp('layouts')
    photos = sorted(SAMPLE.glob('*.jpg'))
    for i, f in enumerate(photos):
        (root/'folders'/_kind(f)).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root/'folders'/_kind(f)/f.name)
        part = 'test' if i % 5 == 1 else 'validation' if i % 5 == 0 else 'train'
        (root/'split'/part/_kind(f)).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root/'split'/part/_kind(f)/f.name)
    (root/'folders'/'.ipynb_checkpoints').mkdir()   # Jupyter's: never a class
    (root/'labels.csv').write_text('file,label\n' + ''.join(
        f"{f.name},{'chat tigré' if _kind(f) == 'cats' else 'Hund Ä'}\n" for f in photos), encoding='utf-8')
    return {'folders': (root/'folders', []), 'split': (root/'split', []), 'pets': (SAMPLE, []),
            'csv': (SAMPLE, ['--labels', root/'labels.csv'])}

@pytest.mark.parametrize('kind', ['folders', 'split', 'pets', 'csv'])
def test_each_layout_trains_the_probe(layouts, kind, tmp_path, monkeypatch):
    """`--mode auto` chooses the probe (about 40 photos a class) in every layout; its classes are the layout's. The
    folder is listed once: the layout is detected once and handed on to the data, the probe and the test/ scoring."""
    from pet_breeds import layout as layout_module
    data, extra = layouts[kind]
    listed, entries = [], layout_module._entries
    monkeypatch.setattr(layout_module, '_entries', lambda folder: listed.append(Path(folder)) or entries(folder))
    out = tmp_path/'run'
    r = run_cli('pet_breeds_train', '--data', data, '--out', out, '--arch', 'efficientnet_lite0', '--size', '128',
                '--bs', '32', '--num_workers', '0', *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    assert listed.count(data) == (0 if kind == 'csv' else 1), listed   # a CSV's rows name the photos: no listing
    m = json.loads((out/'metrics.json').read_text())
    assert (m['mode'], m['layout']['kind'], m['vocab']) == ('probe', kind, CLASSES[kind])
    assert f"layout: {detect_layout(data, *extra[1:]).summary().removeprefix('layout: ')}" in r.stdout
    assert m['cv']['accuracy'] >= (0.9 if kind != 'pets' else 0.6), m['cv']   # real photos, ImageNet features
    assert ('cat vs dog' in r.stdout) == (kind == 'pets')   # only PETS names say which is a cat
    assert ('--data PETS_IMAGES' in r.stdout) == (kind == 'pets')   # the PETS recipe's hint, for PETS alone
    if kind == 'split':   # the test/ folder is scored by the exported model, apart from the training photos
        n_test = len(list((data/'test').rglob('*.jpg')))
        assert (m['test']['images'], m['test']['folder']) == (n_test, 'test')
        assert m['test']['accuracy'] >= 0.8, m['test']
        assert f"test: accuracy {m['test']['accuracy']:.4f} on the {n_test} photos of test/" in r.stdout
    else: assert m['test'] is None
    assert bool(m['layout']['valid']) == (kind == 'split')
    if m['layout']['valid']:   # the validation folder the user made is held out, and scored
        n_valid = m['layout']['valid']
        assert not m['refit'] and m['trained_on'] == sum(m['layout']['counts'].values()) - n_valid, m['layout']
        assert m['unseen']['images'] == n_valid and m['unseen']['accuracy'] >= 0.8, m['unseen']
        assert f"held back {n_valid} photos" in r.stdout
    else: assert m['refit'] and m['unseen']['images'] == 0

def test_split_folders_fine_tune_on_their_validation_folder(layouts, tmp_path):
    "The given validation folder is the validation set (no random split), and test/ is scored after training."
    data, _ = layouts['split']
    out = tmp_path/'run'
    r = run_cli('pet_breeds_train', '--data', data, '--out', out, '--mode', 'finetune', '--arch', 'resnet18',
                '--no_pretrained', '--freeze_epochs', '1', '--epochs', '0', '--lr', '1e-3', '--size', '48',
                '--item_size', '64', '--bs', '16', '--num_workers', '0')
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out/'metrics.json').read_text())
    n_valid = len(list((data/'validation').rglob('*.jpg')))
    assert sum(map(sum, m['confusion']['matrix'])) == n_valid
    assert m['layout']['valid'] == n_valid and m['vocab'] == ['cats', 'dogs']
    assert m['test']['images'] == len(list((data/'test').rglob('*.jpg')))

def _photos(d:Path, names, n=3):
    d.mkdir(parents=True, exist_ok=True)
    for f in sorted(SAMPLE.glob(f'{names}_*.jpg'))[:n]: shutil.copy(f, d/f.name)

def _link_out(d):
    _photos(d/'cats', 'Bengal')
    _photos(d.parent/'elsewhere', 'american_bulldog')
    (d/'dogs').mkdir()
    (d/'dogs'/'x.jpg').symlink_to(next((d.parent/'elsewhere').iterdir()))

BAD = {   # name: (how to make the data folder, extra arguments, what the one line says)
    'photos beside class folders': (lambda d: (_photos(d/'cats', 'Bengal'), _photos(d, 'american_bulldog')), [],
                                    'mixes photos at the top'),
    'an empty class folder': (lambda d: (_photos(d/'cats', 'Bengal'), (d/'dogs').mkdir()), [], 'an empty class folder'),
    'photos nested deeper': (lambda d: (_photos(d/'cats', 'Bengal'), _photos(d/'dogs'/'puppies', 'american_bulldog')),
                             [], 'nested deeper'),
    'a link leaving DATA': (_link_out, [], 'a link that leaves the data folder'),
    'classes differing in case': (lambda d: (_photos(d/'Cats', 'Bengal'), _photos(d/'cats', 'Abyssinian')), [],
                                  'differ only in case'),
    'one class': (lambda d: _photos(d/'cats', 'Bengal'), [], 'a classifier needs two or more'),
    '--label species on folders': (lambda d: (_photos(d/'cats', 'Bengal'), _photos(d/'dogs', 'american_bulldog')),
                                   ['--label', 'species'], '--label species reads the PETS file names'),
    'a CSV naming a missing file': (lambda d: (_photos(d, 'Bengal'), (d/'l.csv').write_text('file,label\nnope.jpg,cat\n')),
                                    ['--labels', 'l.csv'], 'l.csv row 2: nope.jpg: no such file'),
    'a CSV listing a file twice': (lambda d: (_photos(d, 'Bengal'), (d/'l.csv').write_text(
                                       'file,label\nBengal_1.jpg,cat\nBengal_1.jpg,dog\n')),
                                   ['--labels', 'l.csv'], 'listed twice (rows 2 and 3)'),
    'a CSV lacking a column': (lambda d: (_photos(d, 'Bengal'), (d/'l.csv').write_text('file\nBengal_1.jpg\n')),
                               ['--labels', 'l.csv'], "no 'label' column"),
    'a class name that is a path': (lambda d: (_photos(d, 'Bengal'), (d/'l.csv').write_text('file,label\nBengal_1.jpg,..\n')),
                                    ['--labels', 'l.csv'], "class name '..' (a relative folder name)"),
    'no photos at all': (lambda d: d.mkdir(), [], 'no photos'),
    'photos loose in train/': (lambda d: (_photos(d/'train', 'Bengal'), _photos(d/'val'/'cats', 'Abyssinian')), [],
                               'train: photos (Bengal_1.jpg, ...) but no class folders'),
    'a photo beside split folders': (lambda d: (_photos(d/'train'/'cats', 'Bengal'),
                                                _photos(d/'train'/'dogs', 'american_bulldog'), _photos(d, 'Abyssinian', 1)),
                                     [], 'photos at the top (Abyssinian_1.jpg, ...) beside the split folders'),
    'fewer photos than classes': (lambda d: [_photos(d/c, n, 1) for c, n in (('a', 'Bengal'), ('b', 'Abyssinian'),
                                                                          ('c', 'american_bulldog'))],
                                  [], 'one photo in each of the 3 classes; learning a class and checking it needs two'),
    'a link back up the tree': (lambda d: (_photos(d/'cats', 'Bengal'), _photos(d/'dogs', 'american_bulldog'),
                                           (d/'cats'/'up').symlink_to(d)), [], 'cats/up: photos nested deeper'),
}

@pytest.mark.parametrize('case', list(BAD))
def test_bad_layouts_are_refused_in_one_line(case, tmp_path):
    make, extra, says = BAD[case]
    data, out = tmp_path/'DATA', tmp_path/'out'
    make(data)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    extra = [data/a if a.endswith('.csv') else a for a in extra]
    r = run_cli('pet_breeds_train', '--data', data, '--out', out, *extra)
    assert r.returncode in (1, 2), (r.returncode, r.stderr[-2000:])   # 2: usage (one class), 1: the data
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('pet_breeds_train: ') and says in lines[0], r.stderr[-2000:]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before   # nothing moved, nothing written

def test_auto_probes_when_the_fine_tuning_weights_are_missing(monkeypatch):
    "With enough photos to fine-tune but no ResNet50 weights here, `auto` gives the best model at hand: the probe."
    monkeypatch.setattr(probe, 'weights_here', lambda arch: False)
    mode, why = probe.choose_mode(3000, 2, 'resnet50')
    assert mode == 'probe' and "resnet50, but its ImageNet weights are not on this machine" in why
    monkeypatch.setattr(probe, 'weights_here', lambda arch: True)
    assert probe.choose_mode(3000, 2, 'resnet50')[0] == 'finetune'
    assert probe.choose_mode(300, 20, 'resnet50')[0] == 'probe'   # few photos a class: the probe, weights or not

TINY_MODES = {'probe': ['--arch', 'efficientnet_lite0', '--size', '64'],
              'finetune': ['--arch', 'resnet18', '--no_pretrained', '--size', '32', '--item_size', '48', '--lr', '1e-3'],
              'features': ['--arch', 'efficientnet_lite0', '--size', '64', '--lr', '1e-3'],
              'cut': ['--arch', 'efficientnet_lite0', '--cut_layer', 'blocks.3', '--size', '64', '--lr', '1e-3']}

@pytest.mark.parametrize('mode', list(TINY_MODES))
def test_a_handful_of_photos_gives_a_result_or_one_line(mode, tmp_path):
    "Two photos a class: the probe cross-validates them; the modes that need a validation split say it is empty."
    data = tmp_path/'DATA'
    _photos(data/'cats', 'Bengal', 2)
    _photos(data/'dogs', 'american_bulldog', 2)
    r = run_cli('pet_breeds_train', '--data', data, '--out', tmp_path/'out', '--mode', mode, '--epochs', '1',
                '--freeze_epochs', '1', '--num_workers', '0', *TINY_MODES[mode])
    if mode == 'probe':
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads((tmp_path/'out'/'metrics.json').read_text())['cv']['images'] == 4
        assert 'fewer than a batch' not in r.stderr   # the probe makes no training batches
    else:
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [(
            f"pet_breeds_train: {data}: no validation photos (4 photos at --valid_pct 0.2 leave none); add photos, "
            f"raise --valid_pct, or use --mode probe (it cross-validates)")], r.stderr[-3000:]   # that line alone
        assert not (tmp_path/'out'/'model').exists()

def test_fewer_photos_than_a_batch_still_train(tmp_path):
    "Eight training photos and --bs 64: one batch of eight (fastai would drop the partial batch and train on nothing)."
    data = tmp_path/'DATA'
    _photos(data/'cats', 'Bengal', 5)
    _photos(data/'dogs', 'american_bulldog', 5)
    r = run_cli('pet_breeds_train', '--data', data, '--out', tmp_path/'out', '--mode', 'finetune', '--arch', 'resnet18',
                '--no_pretrained', '--freeze_epochs', '1', '--epochs', '0', '--lr', '1e-3', '--size', '32',
                '--item_size', '48', '--num_workers', '0')
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pet_breeds_train: warning: 8 training photos, fewer than a batch of 64: batches of 8" in r.stderr.splitlines()
    assert 'warnings.warn(' not in r.stderr   # one line, not Python's two (the code that warned is no user's business)
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert len(m['batch_losses']) >= 1 and sum(map(sum, m['confusion']['matrix'])) == 2, m['batch_losses']
