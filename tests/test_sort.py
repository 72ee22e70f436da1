"""pet_breeds_sort: batch sorting, copies, name clashes, names with line breaks, rejects, --min_prob, crash safety
(a real SIGKILL, and a kill injected at every file operation), and --watch (in a thread, and the command stopped by SIGTERM)."""
import errno, hashlib, json, os, shutil, signal, subprocess, sys, threading, time
from collections import Counter
from pathlib import Path
import pytest
from fastcore.script import anno_parser
import pet_breeds.files as filesmod, pet_breeds.sort as sortmod
from pet_breeds.core import BadImage, PetBreedsError, breed_label, open_image
from pet_breeds.files import COLUMNS, CSV_NAME, JOURNAL_NAME, LOCK_NAME, PredictionsCSV
from pet_breeds.inference import load_model
from pet_breeds.sort import REJECTED, UNSURE, Sorter, sort_images
from pet_breeds.watch import sort_main, watch_folder
import pet_breeds.watch as watch_mod

OWN = {CSV_NAME, JOURNAL_NAME, LOCK_NAME}  # the sorter's own files in OUT; everything else must be an input
SORT_EXE = Path(sys.executable).parent/'pet_breeds_sort'


@pytest.fixture(scope='module')
def pm(tiny_model): return load_model(tiny_model[0])

def spread(sample_dir, n):
    "`n` real JPEG-named images spread over the three breeds, including the GIF and the PNG in disguise."
    files = sorted(sample_dir.glob('*.jpg'))
    picked = [files[i * len(files) // n] for i in range(n)]
    odd = [sample_dir/'Abyssinian_34.jpg', sample_dir/'Abyssinian_5.jpg']
    return odd + [f for f in picked if f not in odd][:n - 2]

def make_incoming(folder:Path, files) -> Path:
    folder.mkdir(parents=True)
    for f in files: shutil.copy(f, folder/Path(f).name)
    return folder

def sha(p) -> str: return hashlib.sha256(Path(p).read_bytes()).hexdigest()
def checksums(folder) -> dict: return {p.name: sha(p) for p in Path(folder).iterdir() if p.is_file()}

def out_files(out:Path) -> list:
    "Every file under OUT, hidden ones included, except the sorter's own: temporary files left behind count."
    return [p for p in out.rglob('*') if p.is_file() and p.relative_to(out).as_posix() not in OWN]

def check_exactly_once(inputs:dict, out:Path) -> list:
    "Each input (name -> sha256) is in OUT exactly once, with exactly one CSV row naming where; returns the rows."
    rows = PredictionsCSV(out/CSV_NAME).rows()
    assert sorted(r['source'] for r in rows) == sorted(inputs)
    assert Counter(sha(p) for p in out_files(out)) == Counter(inputs.values())
    assert len({r['destination'] for r in rows}) == len(rows)
    for r in rows: assert sha(out/r['destination']) == r['sha256'] == inputs[r['source']], r
    return rows

class ByName:
    "A stand-in for `PetModel` where only the file operations matter: opens each item, labels it by its file name."
    vocab = ['Abyssinian', 'Bengal', 'american_bulldog']
    def predict_many(self, items, k=3, bs=64, names=None, tta=None):
        res = []
        for item, name in zip(items, names):
            try: open_image(item, name); res.append({'file': name, 'top': [(breed_label(name), 0.9)]})
            except BadImage as e: res.append({'file': name, 'error': str(e)})
        return res


def test_sorts_in_batches_by_predicted_label(pm, sample_dir, tmp_path, monkeypatch):
    files = spread(sample_dir, 30)
    inputs = {f.name: sha(f) for f in files}
    expected = {r['file']: r['top'] for r in pm.predict_many(files, names=[f.name for f in files])}
    batches, probs = [], pm.probs
    monkeypatch.setattr(pm, 'probs', lambda imgs, bs=64, **kw: batches.append(len(imgs)) or probs(imgs, bs, **kw))
    inc, out = make_incoming(tmp_path/'in', files), tmp_path/'out'
    res = sort_images(pm, inc, out, min_prob=0, bs=8)
    assert batches == [8, 8, 8, 6]  # one forward pass per batch, not one per image
    assert list(inc.iterdir()) == []
    rows = check_exactly_once(inputs, out)
    assert (out/CSV_NAME).read_text().splitlines()[0] == ','.join(COLUMNS)
    for r in rows:
        top = expected[r['source']]
        assert r['status'] == 'sorted' and r['label'] in pm.vocab and r['destination'] == f"{r['label']}/{r['source']}"
        assert abs(float(r['prob']) - top[0][1]) < 1e-3
        if top[0][1] - top[1][1] > 1e-3: assert r['label'] == top[0][0]
        assert [l for l, p in json.loads(r['top3'])] == [l for l, p in top] or top[0][1] - top[1][1] <= 1e-3
    folders = {d.name: len(list(d.iterdir())) for d in out.iterdir() if d.is_dir()}
    assert folders == Counter(r['label'] for r in rows) and set(folders) <= set(pm.vocab)
    assert res['sorted'] == 30 and res['labels'] == folders


def test_copy_leaves_inputs_and_a_second_run_skips_them(pm, sample_dir, tmp_path):
    inc, out = make_incoming(tmp_path/'in', spread(sample_dir, 6)), tmp_path/'out'
    before = checksums(inc)
    res = sort_images(pm, inc, out, copy=True, min_prob=0)
    assert checksums(inc) == before and res['sorted'] == 6
    check_exactly_once(before, out)
    again = sort_images(pm, inc, out, copy=True, min_prob=0)
    assert (again['skipped'], again['rows']) == (6, [])
    check_exactly_once(before, out)


def test_name_clash_gets_a_suffix_and_leaves_the_original(pm, sample_dir, tmp_path):
    a, b = sample_dir/'Bengal_20.jpg', sample_dir/'american_bulldog_20.jpg'
    la, lb = pm.predict(a)[0][0], pm.predict(b)[0][0]
    out = tmp_path/'out'
    for d in {la, lb}: (out/d).mkdir(parents=True)
    (out/la/a.name).write_bytes(b'already here: a')
    (out/lb/b.name).write_bytes(b'already here: b')
    (out/lb/'american_bulldog_20-1.jpg').write_bytes(b'already here: b-1')
    existing = {p.relative_to(out).as_posix(): sha(p) for p in out.rglob('*.jpg')}
    inc = make_incoming(tmp_path/'in', [a, b])
    res = sort_images(pm, inc, out, min_prob=0)
    assert {p.relative_to(out).as_posix(): sha(p) for p in out.rglob('*.jpg') if p.relative_to(out).as_posix() in existing} == existing
    dests = {r['source']: r['destination'] for r in res['rows']}
    assert dests == {a.name: f'{la}/Bengal_20-1.jpg', b.name: f'{lb}/american_bulldog_20-2.jpg'}
    assert sha(out/dests[a.name]) == sha(a) and sha(out/dests[b.name]) == sha(b)


LINE_BREAKS = '\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029'  # every character str.splitlines breaks at

@pytest.mark.parametrize('copy', [False, True])
def test_names_with_line_breaks_are_the_same_on_disk_and_in_the_csv(pm, sample_dir, tmp_path, copy):
    "U+0085, U+2028 and U+2029 were once kept in file names but spaced in the CSV, so rows named no file and files were sorted twice."
    inc, out = tmp_path/'in', tmp_path/'out'
    inc.mkdir()
    for i, (c, f) in enumerate(zip(LINE_BREAKS, spread(sample_dir, len(LINE_BREAKS)))): shutil.copy(f, inc/f'cat{c}{i}.jpg')
    inputs = checksums(inc)
    sort_images(pm, inc, out, copy=copy, min_prob=0)
    csv_before, rows = (out/CSV_NAME).read_bytes(), PredictionsCSV(out/CSV_NAME).rows()
    again = sort_images(pm, inc, out, copy=copy, min_prob=0)
    assert again['rows'] == [] and (out/CSV_NAME).read_bytes() == csv_before
    assert sorted(r['destination'] for r in rows) == sorted(p.relative_to(out).as_posix() for p in out_files(out))
    for r in rows: assert r['destination'].endswith('/' + r['source']) and sha(out/r['destination']) == r['sha256'], r
    assert sorted(r['sha256'] for r in rows) == sorted(inputs.values())
    assert sorted(r['source'] for r in rows) == sorted(f'cat_{i}.jpg' for i in range(len(LINE_BREAKS)))
    assert checksums(inc) == (inputs if copy else {})


def test_files_that_are_not_images_are_rejected_with_the_reason(pm, sample_dir, tmp_path):
    inc = make_incoming(tmp_path/'in', [sample_dir/'Bengal_21.jpg', sample_dir/'Abyssinian_100.mat'])
    (inc/'x.jpg').write_text('just some text')
    jpeg = (sample_dir/'Bengal_22.jpg').read_bytes()
    (inc/'Bengal_cut.jpg').write_bytes(jpeg[:len(jpeg) // 3])
    before, out = checksums(inc), tmp_path/'out'
    res = sort_images(pm, inc, out, min_prob=0)
    rows = {r['source']: r for r in check_exactly_once(before, out)}
    assert checksums(out/REJECTED) == {n: before[n] for n in ['x.jpg', 'Abyssinian_100.mat', 'Bengal_cut.jpg']}
    assert res['rejected'] == 3 and rows['Bengal_21.jpg']['status'] == 'sorted'
    for n in ['x.jpg', 'Abyssinian_100.mat', 'Bengal_cut.jpg']:
        assert rows[n]['status'] == 'rejected' and rows[n]['destination'] == f'{REJECTED}/{n}'
        assert (rows[n]['label'], rows[n]['prob']) == ('', '')
    assert 'not an image' in rows['x.jpg']['reason'] and 'not an image' in rows['Abyssinian_100.mat']['reason']
    assert 'truncated' in rows['Bengal_cut.jpg']['reason']


def test_min_prob_above_every_prediction_sends_all_to_unsure(pm, tiny_model, sample_dir, tmp_path, capsys):
    files = spread(sample_dir, 6)
    top = max(r['top'][0][1] for r in pm.predict_many(files))
    assert top < 1
    threshold = (top + 1) / 2
    inc, out = make_incoming(tmp_path/'in', files), tmp_path/'out'
    before = checksums(inc)
    args = vars(anno_parser(sort_main).parse_args([str(tiny_model[0]), str(inc), str(out), '--copy', '--min_prob', str(threshold)]))
    for extra in ('pdb', 'xtra'): args.pop(extra, None)
    sort_main(**args)
    assert 'sorted 0; unsure 6; rejected 0' in capsys.readouterr().out
    assert checksums(inc) == before  # --copy
    assert checksums(out/UNSURE) == before
    rows = check_exactly_once(before, out)
    assert all(r['status'] == 'unsure' and r['label'] in pm.vocab and float(r['prob']) < threshold for r in rows)


def test_exit_codes_say_what_happened(tiny_model, sample_dir, tmp_path, monkeypatch, capsys):
    "0: all sorted; 3 (EXIT_PARTIAL): a file could not be read, named on stderr, the rest sorted; 4 (EXIT_STOPPED): interrupted."
    files = spread(sample_dir, 3)
    sort_main(model=str(tiny_model[0]), incoming=str(make_incoming(tmp_path/'a', files)), out=str(tmp_path/'oa'), copy=True)
    inc = make_incoming(tmp_path/'b', files)
    unreadable, read_bytes = inc/files[0].name, Path.read_bytes
    readable = {n: h for n, h in checksums(inc).items() if n != unreadable.name}
    def refuse(self):
        if self == unreadable: raise PermissionError(13, 'Permission denied')
        return read_bytes(self)
    monkeypatch.setattr(Path, 'read_bytes', refuse)
    with pytest.raises(SystemExit) as e: sort_main(model=str(tiny_model[0]), incoming=str(inc), out=str(tmp_path/'ob'), copy=True)
    assert e.value.code == 3 and f'cannot read {unreadable.name}: [Errno 13] Permission denied' in capsys.readouterr().err
    monkeypatch.setattr(Path, 'read_bytes', read_bytes)
    assert len(check_exactly_once(readable, tmp_path/'ob')) == len(files) - 1    # the others sorted
    from pet_breeds import watch
    monkeypatch.setattr(watch, 'sort_images', lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(SystemExit) as e: sort_main(model=str(tiny_model[0]), incoming=str(inc), out=str(tmp_path/'oc'))
    assert e.value.code == 4 and 'interrupted; run it again to finish' in capsys.readouterr().err

def test_mistakes_a_user_can_fix_give_one_line(tiny_model, sample_dir, tmp_path):
    inc = make_incoming(tmp_path/'in', spread(sample_dir, 2))
    with pytest.raises(SystemExit, match='^pet_breeds_sort: .*no model.json'):
        sort_main(model=str(tmp_path/'nope'), incoming=str(inc), out=str(tmp_path/'out'))
    with pytest.raises(SystemExit, match='^pet_breeds_sort: .*no such folder'):
        sort_main(model=str(tiny_model[0]), incoming=str(tmp_path/'nope'), out=str(tmp_path/'out'))
    with Sorter(ByName(), tmp_path/'out'):
        with pytest.raises(PetBreedsError, match='another pet_breeds_sort'): sort_images(ByName(), inc, tmp_path/'out')


def test_precision_reaches_the_model(tiny_model, sample_dir, tmp_path, monkeypatch):
    files = spread(sample_dir, 2)
    with Sorter(str(tiny_model[0]), tmp_path/'o1', copy=True, precision='bf16') as s: pass
    assert s.model.policy.dtype == 'bfloat16'
    seen = []
    monkeypatch.setattr(watch_mod, 'load_model', lambda *a, **kw: seen.append(kw['precision']) or load_model(*a, **kw))
    sort_main(model=str(tiny_model[0]), incoming=str(make_incoming(tmp_path/'in', files)), out=str(tmp_path/'o2'), copy=True,
              precision='bf16')
    assert seen == ['bf16'] and len(list((tmp_path/'o2').rglob('*.jpg'))) == len(files)
    with pytest.raises(SystemExit, match="^pet_breeds_sort: unknown precision 'fp8'"):
        sort_main(model=str(tiny_model[0]), incoming=str(tmp_path/'in'), out=str(tmp_path/'o3'), precision='fp8')

def test_sigkill_mid_run_then_run_again_loses_and_duplicates_nothing(pm, tiny_model, sample_dir, tmp_path):
    inc = make_incoming(tmp_path/'in', spread(sample_dir, 72))
    (inc/'notes.jpg').write_text('not an image')
    inputs, out = checksums(inc), tmp_path/'out'
    proc = subprocess.Popen([str(SORT_EXE), str(tiny_model[0]), str(inc), str(out), '--bs', '2'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and len(out_files(out)) >= 5: break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    moved = len(out_files(out))
    assert 5 <= moved < len(inputs) and 0 < len(list(inc.iterdir())) < len(inputs)
    sort_images(pm, inc, out, bs=16)  # the second run, to completion
    assert list(inc.iterdir()) == []
    check_exactly_once(inputs, out)
    assert not (out/JOURNAL_NAME).read_bytes()


class Killed(BaseException): "Like SIGKILL: nothing in the sorter catches it."

class KillingOS:
    "The `os` module, except that the `at`-th file operation raises `Killed`; `no_links_from` fakes another filesystem."
    OPS = {'link', 'unlink', 'replace', 'fsync', 'utime'}
    def __init__(self, at=None, no_links_from=None): self.at, self.n, self.no_links_from = at, 0, no_links_from
    def __getattr__(self, name):
        f = getattr(os, name)
        if name not in self.OPS: return f
        def op(*args, **kw):
            self.n += 1
            if self.n == self.at: raise Killed(name)
            if name == 'link' and self.no_links_from and Path(args[0]).parent == self.no_links_from:
                raise OSError(errno.EXDEV, 'Invalid cross-device link')
            return f(*args, **kw)
        return op

@pytest.mark.parametrize('mode', ['move', 'copy', 'move-across-filesystems'])
def test_killed_at_every_file_operation_then_run_again(mode, sample_dir, tmp_path, monkeypatch):
    copy = mode == 'copy'
    n, fired = 0, True
    while fired:
        n += 1
        inc = make_incoming(tmp_path/f'{n}/in', [sample_dir/'Bengal_20.jpg'])
        (inc/'notes.jpg').write_text('not an image')
        inputs, out = checksums(inc), tmp_path/f'{n}/out'
        fake_fs = inc if mode == 'move-across-filesystems' else None
        killer = KillingOS(n, fake_fs)
        for mod in (filesmod, sortmod): monkeypatch.setattr(mod, 'os', killer)  # one count over both layers
        try: sort_images(ByName(), inc, out, copy=copy)
        except Killed: pass
        fired = killer.n >= n  # False once the run got to the end before the n-th operation
        for mod in (filesmod, sortmod): monkeypatch.setattr(mod, 'os', KillingOS(None, fake_fs))
        sort_images(ByName(), inc, out, copy=copy)
        check_exactly_once(inputs, out)
        assert checksums(inc) == (inputs if copy else {})
    assert n > 12  # the sweep really went through the transfers


def test_half_written_csv_row_and_journal_line_are_repaired(sample_dir, tmp_path):
    inc, out = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg']), tmp_path/'out'
    inputs = checksums(inc)
    sort_images(ByName(), inc, out)
    with open(out/CSV_NAME, 'ab') as f: f.write(b'2026-01-01T00:00:00,Bengal_9')
    with open(out/JOURNAL_NAME, 'ab') as f: f.write(b'{"id": "0123", "src": "/nowh')
    shutil.copy(sample_dir/'Bengal_21.jpg', inc)
    inputs['Bengal_21.jpg'] = sha(sample_dir/'Bengal_21.jpg')
    sort_images(ByName(), inc, out)
    check_exactly_once(inputs, out)


def test_move_across_real_filesystems(sample_dir, tmp_path):
    shm = Path('/dev/shm')
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev: pytest.skip('no second filesystem')
    import tempfile
    with tempfile.TemporaryDirectory(dir=shm) as d:
        inc = make_incoming(Path(d)/'in', spread(sample_dir, 4))
        inputs, out = checksums(inc), tmp_path/'out'
        sort_images(ByName(), inc, out)
        assert list(inc.iterdir()) == []
        check_exactly_once(inputs, out)


def slow_write(path:Path, data:bytes, chunks:int=10, pause:float=0.2):
    "Write `data` in `chunks` pieces with pauses, as a slow download does."
    step = len(data) // chunks + 1
    with open(path, 'wb') as f:
        for i in range(0, len(data), step):
            f.write(data[i:i+step]); f.flush()
            time.sleep(pause)

def wait_for_rows(out:Path, n:int, timeout:float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out/CSV_NAME).exists() and len(rows := PredictionsCSV(out/CSV_NAME).rows()) >= n: return rows
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} rows after {timeout}s")

def test_watch_sorts_arrivals_once_and_only_when_complete(pm, sample_dir, tmp_path):
    files = spread(sample_dir, 8)
    inc, out = make_incoming(tmp_path/'in', files[:2]), tmp_path/'out'
    (inc/'.hidden.jpg').write_bytes(files[2].read_bytes())
    (inc/'y.jpg.part').write_bytes(b'\xff\xd8 a download still going')
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_folder, args=(pm, inc, out),
                               kwargs=dict(min_prob=0, bs=4, settle=1.0, poll=0.1, stop=stop, on_rows=seen.extend))
    watcher.start()
    try:
        time.sleep(0.5)
        for f in files[3:6]: shutil.copy(f, inc/f.name)
        shutil.copy(files[6], inc/(files[6].name + '.crdownload'))
        time.sleep(0.3)
        os.rename(inc/(files[6].name + '.crdownload'), inc/files[6].name)
        slow = files[7].read_bytes()
        slow_write(inc/files[7].name, slow)  # pauses of 0.2s, shorter than settle
        expected = {f.name: sha(f) for f in files[:2] + files[3:8]}
        wait_for_rows(out, len(expected), timeout=60)
        time.sleep(1.5)  # time enough to sort anything twice, if it would
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()
    rows = {r['source']: r for r in check_exactly_once(expected, out)}
    assert sorted(r['source'] for r in seen) == sorted(expected)
    assert rows[files[7].name]['status'] == 'sorted' and rows[files[7].name]['sha256'] == hashlib.sha256(slow).hexdigest()
    assert sorted(p.name for p in inc.iterdir()) == ['.hidden.jpg', 'y.jpg.part']


def test_watch_command_stops_cleanly_on_sigterm(tiny_model, sample_dir, tmp_path):
    inc, out = make_incoming(tmp_path/'in', []), tmp_path/'out'
    proc = subprocess.Popen([str(SORT_EXE), str(tiny_model[0]), str(inc), str(out), '--watch', '--copy', '--settle', '0.3'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        files = spread(sample_dir, 3)
        for f in files: shutil.copy(f, inc/f.name)
        wait_for_rows(out, 3, timeout=120)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == 0, stderr
    assert 'Traceback' not in stderr
    assert stdout.startswith('watching') and 'sorted' in stdout.splitlines()[-1]
    assert sorted(l.split(' -> ')[0] for l in stdout.splitlines()[1:-1]) == sorted(f.name for f in files)  # a line per file
    check_exactly_once({f.name: sha(f) for f in files}, out)
    assert checksums(inc) == {f.name: sha(f) for f in files}
