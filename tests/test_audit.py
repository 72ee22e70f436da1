"`pet_breeds_audit` on the committed real photos with planted mistakes, and on bad input (issue 20, parts 1 and 4)."
import contextlib, csv, io, json, os, runpy, shutil, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from conftest import copy_photos, random_export_meta

FAST = ('--backbones', 'efficientnet_lite0')   # one backbone: the same code path, half the feature time

def audit_cli(*args) -> tuple:
    "`(exit status, stdout, stderr)` of `python -m pet_breeds.audit ARGS`, run in this process (the console script is not installed in a shared venv)."
    out, err, code, old = io.StringIO(), io.StringIO(), 0, sys.argv
    try:
        sys.argv = ['pet_breeds_audit', *map(str, args)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: runpy.run_module('pet_breeds.audit', run_name='__main__')
            except SystemExit as e: code = e.code
            if isinstance(code, str): print(code, file=sys.stderr); code = 1
    finally: sys.argv = old
    return int(code or 0), out.getvalue(), err.getvalue()

def snapshot(folder:Path) -> dict:
    "Every file under `folder` with its size and modification time: equal before and after means nothing moved."
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob('*'))}

def rows(f:Path) -> list: return list(csv.DictReader(open(f)))

RENAMED = {'Abyssinian_5.jpg': 'american_bulldog_900.jpg', 'american_bulldog_5.jpg': 'Bengal_901.jpg'}

@pytest.fixture(scope='module')
def planted(tmp_path_factory, sample_dir):
    """A copy of nbs/images/pets with mistakes planted: a cat renamed to a dog breed and a dog to a cat breed, an exact
    copy, a mirrored copy, a tiny dark image, an unreadable file and a name outside the pattern; audited once."""
    root = tmp_path_factory.mktemp('audit')
    data = root/'images'
    shutil.copytree(sample_dir, data)
    for old, new in RENAMED.items(): (data/old).rename(data/new)
    shutil.copy(data/'Bengal_3.jpg', data/'Bengal_902.jpg')
    Image.open(data/'Bengal_7.jpg').transpose(Image.FLIP_LEFT_RIGHT).save(data/'Bengal_905.jpg', quality=90)
    Image.new('RGB', (40, 40), (5, 5, 5)).save(data/'Abyssinian_903.jpg')
    (data/'Bengal_904.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    shutil.copy(data/'Abyssinian_3.jpg', data/'holiday photo.jpg')
    before = snapshot(data)
    r = audit_cli(data, '--out', root/'report', *FAST, '--top', 6)
    return dict(data=data, report=root/'report', result=r, before=before, root=root)

def test_the_renamed_photos_come_first(planted):
    code, out, err = planted['result']
    assert code == 0, err[-3000:]
    top = rows(planted['report']/'label_issues.csv')
    assert list(top[0]) == ['file', 'given', 'suggested', 'score', 'flagged']
    assert {r['file'] for r in top[:2]} == set(RENAMED.values()), top[:4]
    got = {r['file']: (r['given'], r['suggested']) for r in top[:2]}
    assert got == {'american_bulldog_900.jpg': ('american_bulldog', 'Abyssinian'), 'Bengal_901.jpg': ('Bengal', 'american_bulldog')}, got
    flagged = [r['flagged'] == 'True' for r in top]   # cleanlab's verdict: how many is its estimate, which are the lowest scores
    assert flagged[0] and flagged == sorted(flagged, reverse=True) and sum(flagged) <= 2, flagged[:5]
    scores = [float(r['score']) for r in top]
    assert scores == sorted(scores) and len(top) == 84   # every photo in the check, most suspect first
    assert 'american_bulldog_900.jpg: american_bulldog -> Abyssinian' in out and 'cross-validated accuracy' in out

def test_duplicates_exact_and_near(planted):
    dups = {(r['file'], r['duplicate_of'], r['kind']) for r in rows(planted['report']/'duplicates.csv')}
    assert ('Bengal_902.jpg', 'Bengal_3.jpg', 'exact') in dups, dups
    assert ('Bengal_905.jpg', 'Bengal_7.jpg', 'near') in dups, dups
    assert len(dups) == 2, dups   # no two of the real photos are near duplicates

def test_quality_flags_and_named_skips(planted):
    code, out, err = planted['result']
    assert code == 0, err[-3000:]
    q = {r['file']: r['flags'].split() for r in rows(planted['report']/'quality.csv')}
    assert q['Abyssinian_903.jpg'] == ['tiny', 'near_constant', 'dark'], q
    assert q['Bengal_904.jpg'] == ['unreadable'], q
    assert set(q) == {'Abyssinian_903.jpg', 'Bengal_904.jpg'}, q   # the real photos trip nothing
    assert 'skipped Abyssinian_100.mat: not an image file (extension .mat)' in out
    assert 'skipped Bengal_904.jpg: unreadable' in out
    assert 'skipped holiday photo.jpg: name is not <breed>_<number>' in out
    assert 'quality Abyssinian_903.jpg: tiny near_constant dark' in out

def test_the_report_and_nothing_else(planted):
    assert snapshot(planted['data']) == planted['before']   # nothing moved, renamed or written among the photos
    assert sorted(p.name for p in planted['report'].iterdir()) == ['duplicates.csv', 'label_issues.csv', 'quality.csv',
                                                                   'summary.json', 'suspects.png']
    s = json.loads((planted['report']/'summary.json').read_text())
    assert s['backbones'] == ['efficientnet_lite0'] and s['folds'] == 5 and s['cv_accuracy'] > 0.9 and not s['leak_check']
    with Image.open(planted['report']/'suspects.png') as im: assert im.format == 'PNG' and im.width > 500

def test_a_duplicate_across_a_runs_split_is_a_leak(planted):
    model = planted['root']/'run'/'model'
    model.mkdir(parents=True)
    meta = random_export_meta('resnet18', ['Abyssinian', 'Bengal', 'american_bulldog'], valid_files=['Bengal_902.jpg', 'Bengal_10.jpg'])
    (model/'model.json').write_text(json.dumps(meta))
    code, out, err = audit_cli(planted['data'], '--out', planted['root']/'report2', '--model', model.parent, *FAST)
    assert code == 0, err[-3000:]
    dups = {(r['file'], r['duplicate_of'], r['kind']) for r in rows(planted['root']/'report2'/'duplicates.csv')}
    assert ('Bengal_902.jpg', 'Bengal_3.jpg', 'leak') in dups and ('Bengal_905.jpg', 'Bengal_7.jpg', 'near') in dups, dups
    meta['valid_files'] = ['elsewhere_1.jpg']
    (model/'model.json').write_text(json.dumps(meta))
    code, out, err = audit_cli(planted['data'], '--out', planted['root']/'report3', '--model', model, *FAST)
    assert code == 2 and 'names no photo of' in err and err.strip().count('\n') == 0, err   # a --model of other photos: 2

def _folder(tmp_path, sample_dir, counts:dict) -> Path: return copy_photos(tmp_path/'images', counts, pattern='_*.jpg')

def test_a_breed_with_one_photo_is_a_named_skip(tmp_path, sample_dir):
    d = _folder(tmp_path, sample_dir, {'Abyssinian': 4, 'Bengal': 4, 'american_bulldog': 1})
    before = snapshot(d)
    code, out, err = audit_cli(d, '--out', tmp_path/'r', *FAST)
    assert code == 0, err[-3000:]
    lone = next(d.glob('american_bulldog_*')).name
    assert f'skipped {lone}: the only photo of american_bulldog: cross-validation needs 2' in out, out
    assert lone not in {r['file'] for r in rows(tmp_path/'r'/'label_issues.csv')}
    assert snapshot(d) == before

BAD = {   # case: (arguments, exit status, what stderr says)
    'one-breed': (['ONE'], 1, 'the label check needs 2 breeds with 2 photos each; photos per breed: Bengal (3)'),
    'no-folder': (['MISSING'], 1, 'does not exist'),
    'report-not-writable': (['TWO', '--out', 'FILE/report'], 1, 'cannot write the report there'),
    'report-inside-photos': (['TWO', '--out', 'TWO/report'], 2, "inside the photos' folder"),   # options that do not fit: 2
    'folds': (['TWO', '--folds', '1'], 2, '--folds is 1'),
    'near': (['TWO', '--near', '1.5'], 2, '--near is 1.5'),
    'top': (['TWO', '--top', '-1'], 2, '--top is -1'),
}

@pytest.mark.parametrize('case', list(BAD))
def test_bad_input_is_one_line_and_moves_nothing(tmp_path, sample_dir, case):
    args, code, says = BAD[case]
    (tmp_path/'one').mkdir(); (tmp_path/'two').mkdir()
    one = _folder(tmp_path/'one', sample_dir, {'Bengal': 3})
    two = _folder(tmp_path/'two', sample_dir, {'Bengal': 3, 'Abyssinian': 3})
    (tmp_path/'file').write_text('a file, not a folder')
    sub = {'ONE': str(one), 'TWO': str(two), 'MISSING': str(tmp_path/'missing'), 'FILE': str(tmp_path/'file')}
    args = [next((a.replace(k, v) for k, v in sub.items() if a.startswith(k)), a) for a in args]
    if '--out' not in args: args += ['--out', str(tmp_path/'report')]
    before = snapshot(tmp_path)
    got, out, err = audit_cli(*args, *FAST)
    assert got == code and says in err, (got, err[-2000:])
    assert err.strip().count('\n') == 0 and err.startswith('pet_breeds_audit: '), err   # one line
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith('report')} == before, set(after) ^ set(before)
