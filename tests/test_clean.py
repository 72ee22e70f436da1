"The cleaner that acts on the audit (issue 20, part 2): decisions that persist, moves that are journaled, an undo that puts every file back."
import contextlib, csv, io, json, os, shutil, sys
from pathlib import Path
import pytest
from pet_breeds import clean_cli
from pet_breeds.clean import Cleaner, BadReport, CleanJournal, apply_decisions, load_decisions, undo_moves, JOURNAL, DECISIONS, LOCK

PETS = Path(__file__).resolve().parents[1]/'nbs'/'images'/'pets'
NAMES = ['Bengal_1.jpg', 'Bengal_2.jpg', 'Bengal_3.jpg', 'Abyssinian_1.jpg', 'Abyssinian_2.jpg',
         'american_bulldog_2.jpg', 'american_bulldog_3.jpg', 'american_bulldog_10.jpg']
ROWS = [['Bengal_2.jpg', 'Bengal', 'Abyssinian', 0.012, True], ['american_bulldog_2.jpg', 'american_bulldog', 'Bengal', 0.05, True],
        ['Abyssinian_1.jpg', 'Abyssinian', 'american_bulldog', 0.31, False]]
RELABEL, REMOVE = {'action': 'relabel', 'label': 'american_bulldog'}, {'action': 'remove', 'label': None}

def write_issues(report:Path, rows=ROWS):
    "label_issues.csv in the audit's format: file relative to DATA, most suspect first."
    with open(report/'label_issues.csv', 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n'); w.writerow(['file', 'given', 'suggested', 'score', 'flagged']); w.writerows(rows)

@pytest.fixture
def photos(tmp_path):
    "`(DATA, REPORT)`: eight committed photos and an audit's label_issues.csv for three of them."
    data, report = tmp_path/'data', tmp_path/'report'
    data.mkdir(); report.mkdir()
    for n in NAMES: shutil.copy(PETS/n, data/n)
    write_issues(report)
    return data, report

def tree(folder:Path) -> dict:
    "Every file under `folder` (relative name -> bytes), but the report's lock file."
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file() and p.name != LOCK}

def cmd(*args) -> tuple:
    "`(exit status, stdout, stderr)` of `pet_breeds_audit`, `_app`, `_clean` or `_undo` ARGS (the console scripts' functions), in this process."
    out, err, code, old = io.StringIO(), io.StringIO(), 0, sys.argv
    main = {'pet_breeds_audit': clean_cli.audit_main, 'pet_breeds_app': clean_cli.app_main, 'pet_breeds_clean': clean_cli.clean_main,
            'pet_breeds_undo': clean_cli.undo_main}[args[0]]
    try:
        sys.argv = [str(a) for a in args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: main()
            except SystemExit as e: code = e.code
            if isinstance(code, str): print(code, file=sys.stderr); code = 1
    finally: sys.argv = old
    return int(code or 0), out.getvalue(), err.getvalue()

def test_apply_moves_the_decided_photos_and_only_them(photos):
    "A relabel renames the photo to the new breed with a free number in its folder; a remove moves it to DATA/_removed/; keep and the rest stay."
    data, report = photos
    before = tree(data)
    moves = apply_decisions(data, report, {'Bengal_2.jpg': RELABEL, 'american_bulldog_2.jpg': REMOVE,
                                           'Abyssinian_1.jpg': {'action': 'keep', 'label': None}})
    assert len(moves) == 2
    after = tree(data)
    assert after['american_bulldog_11.jpg'] == before['Bengal_2.jpg']            # 10 is the largest number taken
    assert after['_removed/american_bulldog_2.jpg'] == before['american_bulldog_2.jpg']
    assert set(after) == set(before) - {'Bengal_2.jpg', 'american_bulldog_2.jpg'} | {'american_bulldog_11.jpg', '_removed/american_bulldog_2.jpg'}
    assert all(after[k] == v for k, v in before.items() if k in after)
    recs = CleanJournal(report/JOURNAL).records()
    assert [(r['op'], r['src'], r['dest']) for r in recs] == [('move', 'Bengal_2.jpg', 'american_bulldog_11.jpg'),
                                                             ('move', 'american_bulldog_2.jpg', '_removed/american_bulldog_2.jpg')]

def test_a_removed_name_already_in_removed_gets_a_free_name(photos):
    data, report = photos
    (data/'_removed').mkdir(); (data/'_removed'/'american_bulldog_2.jpg').write_bytes(b'an earlier one')
    apply_decisions(data, report, {'american_bulldog_2.jpg': REMOVE})
    assert (data/'_removed'/'american_bulldog_2.jpg').read_bytes() == b'an earlier one'
    assert (data/'_removed'/'american_bulldog_2-1.jpg').read_bytes() == (PETS/'american_bulldog_2.jpg').read_bytes()

def test_decisions_survive_paging_filters_and_a_new_cleaner(photos):
    "Clicks are saved in REPORT/decisions.json at once: a new Cleaner on the same report (a reload, a new kernel) shows them."
    data, report = photos
    c = Cleaner(data, report, per_page=2)
    assert (c.filter.value, c.page_label.value) == ('flagged', 'page 1/1 (2 photos)')   # cleanlab's issues first
    r0, r1 = c.list.children
    act0, menu0 = r0.children[1].children
    assert menu0.options[0] == 'Abyssinian' and set(menu0.options) == {'Abyssinian', 'american_bulldog', 'Bengal'}   # the suggestion first
    menu0.value = 'american_bulldog'           # picking a breed chooses relabel
    r1.children[1].children[0].value = 'remove'
    assert act0.value == 'relabel'
    c.next.click(); c.filter.value = 'Abyssinian'; c.filter.value = 'all'
    assert load_decisions(report) == {'Bengal_2.jpg': RELABEL, 'american_bulldog_2.jpg': REMOVE}
    c2 = Cleaner(data, report, per_page=2)
    assert [(w.children[1].children[0].value, w.children[1].children[1].value) for w in c2.list.children] == \
           [('relabel', 'american_bulldog'), ('remove', 'Bengal')]
    assert c2.apply_button.description == 'apply 2 decisions'
    assert len(c2.apply()) == 2 and load_decisions(report) == {}   # done decisions are forgotten, the journal has them
    assert (data/'american_bulldog_11.jpg').is_file() and (data/'_removed'/'american_bulldog_2.jpg').is_file()

def test_undo_restores_every_file_byte_for_byte_once(photos):
    "pet_breeds_audit --undo REPORT puts every moved photo back at its name with its bytes; a second undo does nothing and says so."
    data, report = photos
    before = tree(data)
    apply_decisions(data, report, {'Bengal_2.jpg': RELABEL, 'american_bulldog_2.jpg': REMOVE})
    apply_decisions(data, report, {'Bengal_3.jpg': REMOVE})   # a second apply: undone too, last first
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert (code, err) == (0, ''), err
    assert out == 'pet_breeds_undo: put back 3 photos\n'
    assert {k: v for k, v in tree(data).items() if not k.startswith('_removed/')} == before
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert code == 0 and out.startswith('pet_breeds_undo: nothing to undo'), (code, out, err)
    assert {k: v for k, v in tree(data).items() if not k.startswith('_removed/')} == before

def test_undo_follows_a_photo_moved_by_two_applies(photos):
    "Relabelled by one apply, removed by the next: the undo takes it back from _removed/ to its relabelled name, then to its own."
    data, report = photos
    before = tree(data)
    apply_decisions(data, report, {'Bengal_2.jpg': RELABEL})
    apply_decisions(data, report, {'american_bulldog_11.jpg': REMOVE})
    assert undo_moves(report) and {k: v for k, v in tree(data).items() if not k.startswith('_removed/')} == before

@pytest.mark.parametrize('stop', ['before the move', 'half-way'])
def test_an_interrupted_apply_is_undone(photos, monkeypatch, stop):
    """Killed after journaling the second move: before it started, or half-way (the new name hard-linked, the old one
    not yet removed). The undo puts the first back and leaves the second's photo at its name, once."""
    import pet_breeds.clean as clean
    data, report = photos
    before, real, calls = tree(data), clean.transfer, []
    def killed(src, dest, tmp):
        calls.append(src)
        if len(calls) == 1: return real(src, dest, tmp)
        if stop == 'half-way': os.link(src, dest)
        raise KeyboardInterrupt
    monkeypatch.setattr(clean, 'transfer', killed)
    with pytest.raises(KeyboardInterrupt): apply_decisions(data, report, {'Bengal_2.jpg': RELABEL, 'american_bulldog_2.jpg': REMOVE})
    monkeypatch.setattr(clean, 'transfer', real)
    assert len(undo_moves(report)) == 2
    assert {k: v for k, v in tree(data).items() if not k.startswith('_removed/')} == before and not list((data/'_removed').iterdir())
    assert undo_moves(report) == []

def test_one_apply_or_undo_at_a_time(photos):
    "Two pages (or a page and an undo) on one report: the second waits its turn with one line, nothing moved."
    from pet_breeds.files import lock_folder
    data, report = photos
    snap = tree(data)
    with lock_folder(report, LOCK):
        with pytest.raises(Exception, match='another cleaner is applying or undoing'): apply_decisions(data, report, {'Bengal_2.jpg': REMOVE})
        code, out, err = cmd('pet_breeds_undo', '--report', report)
        assert code == 1 and 'another cleaner is applying or undoing' in err, err
    assert tree(data) == snap

def test_two_decisions_for_one_photo_move_nothing(photos):
    data, report = photos
    with pytest.raises(BadReport, match='another decision too'): apply_decisions(data, report, {'Bengal_2.jpg': REMOVE, './Bengal_2.jpg': RELABEL})
    assert not (report/JOURNAL).exists()

@pytest.mark.parametrize('where', ['taken', 'missing'])
def test_undo_refuses_a_taken_name_or_a_missing_photo_and_moves_nothing(photos, where):
    data, report = photos
    apply_decisions(data, report, {'Bengal_2.jpg': RELABEL, 'american_bulldog_2.jpg': REMOVE})
    if where == 'taken': (data/'Bengal_2.jpg').write_bytes(b'another photo')
    else: (data/'_removed'/'american_bulldog_2.jpg').unlink()
    snap = tree(data)
    code, out, err = cmd('pet_breeds_undo', '--report', report)
    assert code == 1 and err.count('\n') == 1 and err.startswith('pet_breeds_undo: '), (code, err)
    assert ('Bengal_2.jpg: another file has this name now' if where == 'taken' else 'american_bulldog_2.jpg: missing') in err, err
    assert tree(data) == snap                 # checked before anything moved: nothing did, nothing overwritten

@pytest.mark.parametrize('file', ['/etc/passwd', '../outside.jpg', 'Bengal_1.jpg/../../outside.jpg', 'link.jpg', '_removed/x.jpg'])
def test_a_report_naming_a_file_outside_data_is_refused(photos, file):
    "A label_issues.csv row is input: one that points out of DATA (absolute, `..`, a link) is refused naming the row, before the page is served."
    data, report = photos
    (data.parent/'outside.jpg').write_bytes(b'not yours'); os.symlink(data.parent/'outside.jpg', data/'link.jpg')
    write_issues(report, ROWS + [[file, 'Bengal', 'Abyssinian', 0.5, True]])
    with pytest.raises(BadReport, match=r'label_issues.csv: row 5 names'): Cleaner(data, report)
    code, out, err = cmd('pet_breeds_clean', '--data', data, '--report', report, '--port', 1)
    assert code == 1 and err.count('\n') == 1 and 'label_issues.csv: row 5 names' in err, (code, err)
    snap = tree(data.parent)
    for bad in [{file: REMOVE}, {'Bengal_1.jpg': {'action': 'relabel', 'label': '../../evil'}}]:
        with pytest.raises(BadReport, match='nothing was moved'): apply_decisions(data, report, bad)
    assert tree(data.parent) == snap and not (report/JOURNAL).exists()

def test_a_bad_journal_line_is_one_line_and_moves_nothing(photos):
    "A journal line that is not the cleaner's (edited, or pointing out of DATA) stops the undo naming the line; a last line a kill cut short is ignored."
    data, report = photos
    apply_decisions(data, report, {'Bengal_2.jpg': REMOVE})
    j = report/JOURNAL
    good = j.read_text()
    j.write_text(good + '{"op": "mo')                   # cut short by a kill: ignored
    assert len(CleanJournal(j).records()) == 1
    snap = tree(data)
    for bad in ['not json\n', json.dumps({'op': 'move', 'id': 'x', 'data': str(data), 'src': '../../etc/passwd',
                                          'dest': 'a.jpg', 'sha256': 'x'}) + '\n']:
        j.write_text(bad + good)
        code, out, err = cmd('pet_breeds_undo', '--report', report)
        assert code == 1 and err == f'pet_breeds_undo: {j}: line 1 is not a record of the cleaner; nothing was moved\n', err
        assert tree(data) == snap

def test_a_bad_decisions_file_is_named(photos):
    data, report = photos
    (report/DECISIONS).write_text('{"Bengal_2.jpg": {"action": "delete", "label": null}}')
    with pytest.raises(BadReport, match="decisions.json: not the cleaner's decisions"): Cleaner(data, report)

def test_each_command_of_its_own_and_last_release_spellings():
    """The audit, the app, the cleaner and the undo are four commands, each with its options in --help; last release's
    `pet_breeds_audit DATA`, `pet_breeds_audit --undo REPORT` and `pet_breeds_app --clean DATA` still run, each with a
    one-line notice naming the new spelling, and the same result."""
    code, out, err = cmd('pet_breeds_app', 'no/such/model', '--port', '70000')
    assert code == 2 and '--port is 70000' in err, (code, err)
    code, out, err = cmd('pet_breeds_audit', '--data', 'no/such/folder')
    assert code == 1 and err.startswith('pet_breeds_audit: no/such/folder: ') and err.count('\n') == 1, (code, err)
    code, out, old = cmd('pet_breeds_audit', 'no/such/folder')
    assert code == 1 and old == 'pet_breeds_audit: a positional DATA is now --data DATA; the old spelling goes in the next release\n' + err
    for new, last, notice in [(['pet_breeds_clean', '--data', 'no/such/folder'], ['pet_breeds_app', '--clean', 'no/such/folder'],
                               'pet_breeds_app: --clean is now pet_breeds_clean --data'),
                              (['pet_breeds_undo', '--report', 'no/such/folder'], ['pet_breeds_audit', '--undo', 'no/such/folder'],
                               'pet_breeds_audit: --undo is now pet_breeds_undo --report')]:
        code, out, err = cmd(*new)
        assert code == 1 and err.startswith(f'{new[0]}: no/such/folder: ') and err.count('\n') == 1, (code, err)
        assert cmd(*last)[:2] == (code, out)
        assert cmd(*last)[2] == f'{notice}; the old spelling goes in the next release\n' + err
    for c, opts in [('pet_breeds_audit', ['--data', '--out', '--bs']), ('pet_breeds_clean', ['--data', '--report', '--max_sessions']),
                    ('pet_breeds_undo', ['--report'])]:
        code, out, err = cmd(c, '--help')
        assert code == 0 and all(o in out for o in opts) and '(default: audit)' in ' '.join(out.split()), (c, out)
