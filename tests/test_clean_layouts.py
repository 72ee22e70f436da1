"""Your own photos (issue 29) in the audit and the cleaner: a folder per class, split folders and a CSV of labels, each
audited (class names, not breeds), a relabel carried out in the layout's own way (the photo moved to the other class's
folder, or the CSV's row rewritten), read back by `detect_layout`, and undone byte for byte."""
import json, shutil
from pathlib import Path
import pytest
from conftest import SAMPLE
from test_audit import FAST, audit_cli, rows
from test_clean import cmd, photos   # photos: test_clean's fixture, eight PETS photos and a report
from pet_breeds.clean import BadReport, JOURNAL, LOCK, Cleaner, apply_decisions, undo_moves
from pet_breeds.layout import detect_layout

CATS = [f'{b}_{i}.jpg' for b in ('Abyssinian', 'Bengal') for i in range(1, 6)]
DOGS = [f'american_bulldog_{i}.jpg' for i in (3, 5, 6, 7, 8, 9, 10, 11)]
PLANTED = 'american_bulldog_2.jpg'   # a dog filed among the cats: the audit's first suspect, relabelled to dogs
CSV_TEXT = ('file,label,is_valid\r\n' + ''.join(f'images/cat{i}.jpg,cats,{i == 0}\r\n' for i in range(len(CATS)))
            + ''.join(f'"images/dog{i}.jpg",dogs,False\r\n' for i in range(len(DOGS))) + 'images/planted.jpg,cats,False\r\n')

def _copy(names, dest:Path, rename=None):
    dest.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names): shutil.copy(SAMPLE/n, dest/(rename(i) if rename else n))

def make(kind:str, root:Path) -> tuple:
    "`(DATA, the planted photo relative to DATA, its new path after the relabel, the --labels CSV or None)`."
    data = root/kind
    if kind == 'folders':
        _copy(CATS + [PLANTED], data/'cats')
        _copy(DOGS, data/'dogs')
        return data, f'cats/{PLANTED}', f'dogs/{PLANTED}', None
    if kind == 'split':   # valid/ has no dogs/ (the relabel makes it), and its cats/ only the dog (the relabel empties it)
        _copy(CATS, data/'train'/'cats')
        _copy(DOGS, data/'train'/'dogs')
        _copy([PLANTED], data/'valid'/'cats')
        _copy(['american_bulldog_12.jpg'], data/'test'/'dogs')
        _copy([CATS[0]], data/'test'/'cats', lambda i: 'copy.jpg')   # a training photo copied into test/: a leak
        return data, f'valid/cats/{PLANTED}', f'valid/dogs/{PLANTED}', None
    _copy(CATS, data/'images', lambda i: f'cat{i}.jpg')
    _copy(DOGS, data/'images', lambda i: f'dog{i}.jpg')
    _copy([PLANTED], data/'images', lambda i: 'planted.jpg')
    _copy(['Bengal_6.jpg'], data/'images', lambda i: 'unlisted.jpg')
    (data/'labels.csv').write_bytes(CSV_TEXT.encode())
    return data, 'images/planted.jpg', 'images/planted.jpg', data/'labels.csv'

def snap(folder:Path) -> dict:
    "Every file (its bytes) and folder under `folder`, but the cleaner's `_removed/` and lock."
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else 'folder' for p in sorted(folder.rglob('*'))
            if p.name != LOCK and p.relative_to(folder).parts[0] != '_removed'}

@pytest.fixture(scope='module', params=['folders', 'split', 'csv'])
def audited(request, tmp_path_factory):
    "One layout, audited once by the command (Lite0 alone): `(kind, DATA, planted, moved-to, CSV, REPORT, result)`."
    root = tmp_path_factory.mktemp(request.param)
    data, planted, dest, labels = make(request.param, root)
    report = root/'report'
    r = audit_cli(data, '--out', report, *FAST, '--top', 4, *(['--labels', labels] if labels else []))
    return request.param, data, planted, dest, labels, report, r

def test_the_audit_reads_the_layout_and_names_classes(audited):
    kind, data, planted, _, labels, report, (code, out, err) = audited
    assert code == 0, err[-3000:]
    issues = rows(report/'label_issues.csv')
    assert {r['given'] for r in issues} | {r['suggested'] for r in issues} == {'cats', 'dogs'}, issues[:3]
    assert (issues[0]['file'], issues[0]['given'], issues[0]['suggested']) == (planted, 'cats', 'dogs'), issues[:3]
    s = json.loads((report/'summary.json').read_text())
    assert s['layout']['kind'] == kind and s['classes'] == 2 and s['layout'].get('csv') == (str(labels.resolve()) if labels else None)
    assert f"photos of 2 classes checked" in out and 'the probability of the given class' in out and 'breed' not in out, out
    assert len(issues) == {'folders': 19, 'split': 21, 'csv': 19}[kind]   # split: train, valid and test, all checked
    if kind == 'split':
        dups = [({r['file'], r['duplicate_of']}, r['kind']) for r in rows(report/'duplicates.csv')]
        assert dups == [({'test/cats/copy.jpg', f'train/cats/{CATS[0]}'}, 'leak')], dups
        assert "(leaks: across the data's own split)" in out
    if kind == 'csv': assert s['skipped'] == {'images/unlisted.jpg': 'not listed in labels.csv: no label to check'}, s['skipped']

def test_a_relabel_follows_the_layout_and_the_undo_puts_it_back(audited):
    "The audit's first suspect relabelled to its suggestion: moved to the other class's folder, or its CSV row rewritten."
    kind, data, planted, dest, labels, report, (code, out, err) = audited
    assert code == 0, err[-3000:]
    before, top = snap(data), rows(report/'label_issues.csv')[0]
    c = Cleaner(data, report)
    assert c.list.children[0].children[1].children[1].options == ('dogs', 'cats')   # the layout's classes
    moves = apply_decisions(data, report, {top['file']: {'action': 'relabel', 'label': top['suggested']}})
    assert [(str(s.relative_to(data)), str(d.relative_to(data))) for s, d in moves] == [(planted, dest)]
    assert detect_layout(data, labels).labels[data/dest] == 'dogs'   # the layout reads the new label
    after = snap(data)
    if kind == 'csv':
        assert after['labels.csv'] == CSV_TEXT.replace('images/planted.jpg,cats,', 'images/planted.jpg,dogs,').encode()
        assert {k: v for k, v in after.items() if k != 'labels.csv'} == {k: v for k, v in before.items() if k != 'labels.csv'}
    else:
        assert after[dest] == before[planted] and planted not in after
        if kind == 'split': assert 'valid/cats' not in after and after['valid/dogs'] == 'folder'   # emptied: gone; lacking: made
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert (code, err) == (0, '') and out == 'pet_breeds_undo: put back 1 photo' + (' (1 row of labels.csv)\n' if labels else '\n'), out
    assert snap(data) == before                         # every file, byte for byte, and every folder
    assert detect_layout(data, labels).labels[data/planted] == 'cats'

def test_a_relabel_to_no_class_or_no_folder_name_is_refused(audited):
    kind, data, planted, _, labels, report, _ = audited
    before = snap(data)
    for label, says in [('birds', "'birds' is no class of"), ('../x', 'a path separator or a character Windows forbids'), ('', '(empty)'),
                        ('cats', 'the photo is cats already')]:
        with pytest.raises(BadReport, match='nothing was moved') as e: apply_decisions(data, report, {planted: {'action': 'relabel', 'label': label}})
        assert says in str(e.value) and '\n' not in str(e.value), str(e.value)
    assert snap(data) == before and undo_moves(report) == []

@pytest.fixture
def csv_data(tmp_path):
    "A CSV layout and a report saying so (the audit's `summary.json` layout, and rows written by hand)."
    data, _, _, labels = make('csv', tmp_path)
    report = tmp_path/'report'
    report.mkdir()
    (report/'summary.json').write_text(json.dumps({'layout': {'kind': 'csv', 'csv': str(labels.resolve())}}))
    (report/'label_issues.csv').write_text('file,given,suggested,score,flagged\nimages/planted.jpg,cats,dogs,0.01,True\n')
    return data, labels, report

def test_a_csv_removal_drops_the_row_and_the_undo_puts_both_back(csv_data):
    "The photo goes to _removed/ and its row is dropped (a row naming a missing file makes the CSV no layout); undo: both back."
    data, labels, report = csv_data
    before = snap(data)
    apply_decisions(data, report, {'images/dog0.jpg': {'action': 'remove', 'label': None},
                                   'images/planted.jpg': {'action': 'relabel', 'label': 'dogs'}})
    assert (data/'_removed'/'dog0.jpg').read_bytes() == before['images/dog0.jpg'] and not (data/'images'/'dog0.jpg').exists()
    assert labels.read_bytes().decode() == CSV_TEXT.replace('"images/dog0.jpg",dogs,False\r\n', '').replace('planted.jpg,cats', 'planted.jpg,dogs')
    lay = detect_layout(data, labels)
    assert data/'images'/'dog0.jpg' not in lay.labels and lay.labels[data/'images'/'planted.jpg'] == 'dogs'
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert code == 0 and out == 'pet_breeds_undo: put back 2 photos (2 rows of labels.csv)\n', (out, err)
    assert snap(data) == before

def test_a_csv_row_changed_by_hand_stops_the_undo(csv_data):
    data, labels, report = csv_data
    apply_decisions(data, report, {'images/planted.jpg': {'action': 'relabel', 'label': 'dogs'}})
    labels.write_bytes(labels.read_bytes().replace(b'planted.jpg,dogs', b'planted.jpg,kittens'))   # edited since
    before = snap(data)
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert code == 1 and err.count('\n') == 1 and 'the row of images/planted.jpg changed since the cleaner wrote it' in err, err
    assert snap(data) == before

def test_a_report_of_another_layout_is_refused(csv_data, tmp_path):
    "The report says split folders, and DATA (read without its CSV) is a folder per class: one line, nothing moved."
    data, labels, report = csv_data
    (report/'summary.json').write_text(json.dumps({'layout': {'kind': 'split'}}))
    with pytest.raises(BadReport, match='the audit read split folders, and the folder now holds folder per class'):
        Cleaner(data, report)
    assert not (report/JOURNAL).exists()

def test_the_cleaner_page_reads_a_csv_from_data_itself(csv_data, monkeypatch):
    "`pet_breeds_app --clean DATA`: a CSV names its photos relative to DATA, even where DATA holds images/ (PETS' place)."
    from pet_breeds import widget
    data, labels, report = csv_data
    served = []
    monkeypatch.setattr(widget, 'check_app_runtime', lambda: None)
    monkeypatch.setattr(widget, 'serve_app', lambda nb, what, *args: served.append(what))   # instead of becoming Voila
    code, out, err = cmd('pet_breeds_clean', '--data', data, '--report', report, '--no_browser')
    assert (code, err, served) == (0, '', [f'the cleaner of {data.resolve()}']), (code, err)

def test_a_report_of_pets_names_relabels_by_renaming(photos):
    "An audit's summary.json that read PETS names: the cleaner renames, as for a report older than the layouts."
    data, report = photos
    (report/'summary.json').write_text(json.dumps({'layout': {'kind': 'pets', 'classes': ['Abyssinian', 'Bengal']}}))
    moves = apply_decisions(data, report, {'Bengal_2.jpg': {'action': 'relabel', 'label': 'american_bulldog'}})
    assert [d.name for _, d in moves] == ['american_bulldog_11.jpg']
