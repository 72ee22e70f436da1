"""pet_breeds_sort: batch sorting, copies, name clashes, names with line breaks, rejects, --min_prob, crash safety
(a real SIGKILL, and a kill injected at every file operation), and --watch (in a thread, and the command stopped by SIGTERM)."""
import contextlib, errno, hashlib, io, json, os, shutil, signal, subprocess, sys, threading, time
from collections import Counter
from pathlib import Path
import pytest
import pet_breeds.files as filesmod, pet_breeds.sort as sortmod
from pet_breeds.core import BadImage, PetBreedsError, breed_label, open_image
from pet_breeds.files import COLUMNS, CSV_NAME, JOURNAL_NAME, LOCK_NAME, PredictionsCSV
from pet_breeds.inference import load_model
from pet_breeds.sort import REJECTED, UNSURE, Sorter, sort_images
from pet_breeds.watch import watch_folder
from pet_breeds.sort_cli import sort_main
import pet_breeds.sort_cli as sort_cli_mod

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
    args = sort_main.command.parse([str(tiny_model[0]), str(inc), '--out', str(out), '--copy', '--min_prob', str(threshold)])
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
    monkeypatch.setattr(sort_cli_mod, 'sort_images', lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
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


def test_a_model_whose_class_would_leave_out_is_refused_in_one_line(sample_dir, tmp_path, monkeypatch, capsys):
    "A class '..' would be the folder OUT/.. (issue 29): refused before anything is printed or written; nothing moves."
    inc = make_incoming(tmp_path/'in', spread(sample_dir, 3))
    before = checksums(inc)
    class Escapes(ByName): vocab = ['Bengal', '..']   # a model made in Python: no model.json was checked
    monkeypatch.setattr(sort_cli_mod, 'load_model', lambda *a, **kw: Escapes())
    for watch in (False, True):
        with pytest.raises(SystemExit) as e:
            sort_main(model='m', incoming=str(inc), out=str(tmp_path/'out'), watch=watch)
        assert str(e.value.code).startswith("pet_breeds_sort: the model's classes: class name '..' (a relative folder name)")
        assert '\n' not in str(e.value.code) and capsys.readouterr().out == ''   # not even 'watching ...'
    assert checksums(inc) == before and sorted(p.name for p in tmp_path.iterdir()) == ['in']


def test_precision_reaches_the_model(tiny_model, sample_dir, tmp_path, monkeypatch):
    files = spread(sample_dir, 2)
    with Sorter(str(tiny_model[0]), tmp_path/'o1', copy=True, precision='bf16') as s: pass
    assert s.model.policy.dtype == 'bfloat16'
    seen = []
    monkeypatch.setattr(sort_cli_mod, 'load_model', lambda *a, **kw: seen.append(kw['precision']) or load_model(*a, **kw))
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
    proc = subprocess.Popen([str(SORT_EXE), str(tiny_model[0]), str(inc), '--out', str(out), '--watch', '--copy', '--settle', '0.3'],
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


# --- issue 21: INCOMING's links and odd files, the journal and the CSV as input, options, printing ---------------

def run_in_thread(f, timeout=60):
    "`f()`'s result, or a failure if it has not returned after `timeout` s (a fifo opened for reading waits for ever)."
    res = {}
    def target():
        try: res['r'] = f()
        except BaseException as e: res['e'] = e   # SystemExit too: raised again in the caller
    t = threading.Thread(target=target, daemon=True)
    t.start(); t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout}s: blocked (on a fifo?)"
    if 'e' in res: raise res['e']
    return res['r']

def hostile_incoming(sample_dir, root:Path):
    "INCOMING with a photo, a link to a photo in a sub-folder (followed), and what must not be read: links out, a loop, a dangling link, a fifo."
    inc, secret = root/'in', root/'secret'
    (inc/'sub').mkdir(parents=True); secret.mkdir()
    shutil.copy(sample_dir/'Bengal_20.jpg', inc/'Bengal_1.jpg')
    shutil.copy(sample_dir/'Bengal_21.jpg', inc/'sub'/'Bengal_21.jpg')
    shutil.copy(sample_dir/'Bengal_22.jpg', secret/'Bengal_22.jpg'); os.chmod(secret/'Bengal_22.jpg', 0o640)  # like /etc/shadow
    for name, to in [('Bengal_2.jpg', 'sub/Bengal_21.jpg'), ('Bengal_3.jpg', '../secret/Bengal_22.jpg'),
                     ('Bengal_4.jpg', secret/'Bengal_22.jpg'), ('Bengal_5.jpg', 'Bengal_5.jpg'), ('Bengal_6.jpg', 'nowhere.jpg'),
                     ('Bengal_8.jpg', 'Bengal_3.jpg')]: os.symlink(to, inc/name)
    os.mkfifo(inc/'Bengal_7.jpg')
    return inc, secret

REFUSED = {'Bengal_3.jpg': 'a symbolic link to a file outside INCOMING (not followed)',
           'Bengal_4.jpg': 'a symbolic link to a file outside INCOMING (not followed)',
           'Bengal_5.jpg': 'a symbolic link loop (not followed)',
           'Bengal_6.jpg': 'a dangling symbolic link (its target does not exist)',
           'Bengal_7.jpg': 'not a regular file (a fifo)',
           'Bengal_8.jpg': 'a symbolic link to a file outside INCOMING (not followed)'}

@pytest.mark.parametrize('copy', [False, True])
def test_links_out_of_incoming_loops_and_fifos_are_named_never_read(sample_dir, tmp_path, copy):
    "Issue 21: a link to /etc/shadow was copied into OUT, world-readable; a loop stopped every run; a fifo would block it."
    inc, secret = hostile_incoming(sample_dir, tmp_path)
    target, out, secret_sha = inc/'sub'/'Bengal_21.jpg', tmp_path/'out', sha(secret/'Bengal_22.jpg')
    res = run_in_thread(lambda: sort_images(ByName(), inc, out, copy=copy))
    rows = {r['source']: r for r in PredictionsCSV(out/CSV_NAME).rows()}
    assert {n: r['status'] for n, r in rows.items() if r['destination']} == {'Bengal_1.jpg': 'sorted', 'Bengal_2.jpg': 'sorted'}
    assert sha(out/rows['Bengal_2.jpg']['destination']) == sha(target)   # the link inside INCOMING was followed
    assert {n: (r['status'], r['destination'], r['reason']) for n, r in rows.items() if not r['destination']} == \
           {n: ('rejected', '', why) for n, why in REFUSED.items()}
    assert sorted(res['errors']) == sorted(f'{n}: {why}' for n, why in REFUSED.items())
    in_out = [p for p in out.rglob('*') if p.relative_to(out).as_posix() not in OWN]
    assert not any(p.is_symlink() for p in in_out) and secret_sha not in {sha(p) for p in in_out if p.is_file()}
    assert os.stat(out/rows['Bengal_2.jpg']['destination']).st_ino != os.stat(target).st_ino   # a copy, not a second name
    assert sha(secret/'Bengal_22.jpg') == secret_sha and sha(target) == rows['Bengal_2.jpg']['sha256']
    left = sorted(p.name for p in inc.iterdir())
    assert left == sorted(['sub', *REFUSED] + (['Bengal_1.jpg', 'Bengal_2.jpg'] if copy else []))  # the refused stay where they are
    again = run_in_thread(lambda: sort_images(ByName(), inc, out, copy=copy))
    assert len(PredictionsCSV(out/CSV_NAME).rows()) == len(rows)   # named once in the CSV...
    assert sorted(again['errors']) == sorted(res['errors'])         # ...and on every run


@pytest.mark.parametrize('mode', ['copy', 'move-across-filesystems'])
def test_a_copy_never_widens_permissions(sample_dir, tmp_path, monkeypatch, mode):
    "Issue 21: a 0640 file came out 0644. A copy (and a move between filesystems, which copies) keeps at most the source's bits."
    inc = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg', sample_dir/'Bengal_21.jpg'])
    modes = {'Bengal_20.jpg': 0o640, 'Bengal_21.jpg': 0o600}
    for n, m in modes.items(): os.chmod(inc/n, m)
    if mode != 'copy':
        for mod in (filesmod, sortmod): monkeypatch.setattr(mod, 'os', KillingOS(None, no_links_from=inc))
    old = os.umask(0o022)
    try: res = sort_images(ByName(), inc, tmp_path/'out', copy=mode == 'copy')
    finally: os.umask(old)
    assert len(res['rows']) == 2
    for r in res['rows']:
        got = os.stat(tmp_path/'out'/r['destination']).st_mode & 0o7777
        assert got & ~modes[r['source']] == 0, f"{r['source']}: {oct(got)} is wider than {oct(modes[r['source']])}"


def test_watch_names_fifos_and_dangling_links_and_goes_on(sample_dir, tmp_path):
    "A fifo in INCOMING once meant an open() that waits for a writer for ever; a dangling link was never named."
    inc, out = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg']), tmp_path/'out'
    os.mkfifo(inc/'Bengal_7.jpg'); os.symlink('nowhere.jpg', inc/'Bengal_6.jpg')
    stop = threading.Event()
    t = threading.Thread(target=watch_folder, args=(ByName(), inc, out), daemon=True,
                         kwargs=dict(settle=0.2, poll=0.05, rescan=0.5, stop=stop))
    t.start()
    try: rows = wait_for_rows(out, 3, timeout=30)
    finally: stop.set(); t.join(10)
    assert not t.is_alive()
    assert {r['source']: (r['status'], r['reason']) for r in rows if not r['destination']} == \
           {'Bengal_7.jpg': ('rejected', REFUSED['Bengal_7.jpg']), 'Bengal_6.jpg': ('rejected', REFUSED['Bengal_6.jpg'])}


def test_sort_command_names_what_it_refused_escaped_and_exits_partial(sample_dir, tmp_path, monkeypatch, capsys):
    "Refused entries are named on stderr, with names and labels through `shown` (a right-to-left override, an escape)."
    inc, _ = hostile_incoming(sample_dir, tmp_path)
    os.symlink('nowhere.jpg', inc/'x\u202egpj.jpg')
    shutil.copy(sample_dir/'Bengal_20.jpg', inc/'Ben\u202egal_30.jpg')   # ByName labels it 'Ben\u202egal'
    monkeypatch.setattr(sort_cli_mod, 'load_model', lambda *a, **kw: ByName())
    with pytest.raises(SystemExit) as e: run_in_thread(lambda: sort_main(model='m', incoming=str(inc), out=str(tmp_path/'out'), copy=True))
    cap = capsys.readouterr()
    assert e.value.code == 3
    assert [l for l in (cap.out + cap.err).splitlines() if '\u202e' in l] == [] and '(Bengal 2, Ben\\u202egal 1)' in cap.out
    assert 'pet_breeds_sort: cannot read x\\u202egpj.jpg: a dangling symbolic link' in cap.err
    for n, why in REFUSED.items(): assert f'pet_breeds_sort: cannot read {n}: {why}' in cap.err


def write_journal(out:Path, *recs):
    (out/'Bengal').mkdir(parents=True, exist_ok=True)
    (out/JOURNAL_NAME).write_text(''.join(json.dumps(r) + '\n' for r in recs))

def record(inc:Path, name:str, sha256:str, **kw) -> dict:
    "A journal record as the sorter writes it: `inc/name` moving to OUT/Bengal/name."
    row = {'source': name, 'destination': f'Bengal/{name}', 'status': 'sorted', 'sha256': sha256, 'label': 'Bengal'}
    return {'id': name, 'src': str(inc/name), 'dest': row['destination'], 'move': True, 'tmp': f'Bengal/.{name}.1234.sorting',
            'sha256': sha256, 'row': row, **kw}

@pytest.mark.parametrize('case', ['tmp ..', 'tmp absolute', 'tmp through a link', 'tmp not a temporary file', 'move: source outside'])
def test_a_journal_naming_paths_outside_out_stops_the_run_and_deletes_nothing(sample_dir, tmp_path, monkeypatch, capsys, case):
    "Issue 21: `_resolve` unlinked `out/rec['tmp']` unchecked, and a 'move' record whose destination has the source's content unlinked the source."
    inc, out, victim = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg']), tmp_path/'out', tmp_path/'victim.jpg'
    shutil.copy(sample_dir/'Bengal_21.jpg', victim)
    hidden = tmp_path/'.v.jpg.1234.sorting'   # named as the sorter names its temporary files, but outside OUT
    hidden.write_bytes(b'not the sorter\'s')
    out.mkdir(); os.symlink(tmp_path, out/'up')
    (out/'Bengal').mkdir(); (out/'Bengal'/'keep.jpg').write_bytes(b'a file of the user in OUT')
    (out/'Bengal'/'.ok.jpg.1234.sorting').write_bytes(b'what a good record would clean up')
    good = record(inc, 'ok.jpg', 'abc')
    bad = {'tmp ..': record(inc, 'v.jpg', 'abc', tmp='Bengal/../../' + hidden.name),
           'tmp absolute': record(inc, 'v.jpg', 'abc', tmp=str(hidden)),
           'tmp through a link': record(inc, 'v.jpg', 'abc', tmp='up/' + hidden.name),
           'tmp not a temporary file': record(inc, 'v.jpg', 'abc', tmp='Bengal/keep.jpg'),
           'move: source outside': {**record(inc, 'v.jpg', sha(victim)), 'src': str(victim), 'dest': 'Bengal/v.jpg'}}[case]
    if case.startswith('move'): shutil.copy(victim, out/'Bengal'/'v.jpg')   # the destination has the source's content
    write_journal(out, good, bad)
    before = {p: p.read_bytes() for p in [*out.rglob('*'), victim, hidden, *inc.iterdir()] if p.is_file() and not p.is_symlink()}
    with pytest.raises(sortmod.BadJournal, match=f'{JOURNAL_NAME}: record 2 .*nothing was deleted'): sort_images(ByName(), inc, out)
    assert {p: p.read_bytes() for p in before if p.exists()} == before
    monkeypatch.setattr(sort_cli_mod, 'load_model', lambda *a, **kw: ByName())
    with pytest.raises(SystemExit) as e: sort_main(model='m', incoming=str(inc), out=str(out))
    assert isinstance(e.value.code, str) and '\n' not in e.value.code   # one line, exit status 1
    assert e.value.code.startswith(f'pet_breeds_sort: {out/JOURNAL_NAME}: record 2 names the ')
    assert {p: p.read_bytes() for p in before if p.exists()} == before


def test_a_csv_row_naming_a_path_outside_out_stops_the_run(sample_dir, tmp_path):
    inc, out = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg']), tmp_path/'out'
    sort_images(ByName(), inc, out, copy=True)
    good = (out/CSV_NAME).read_bytes()
    for row in [',a.jpg,../a.jpg,sorted,Bengal,0.9,,abc,\n', f',a.jpg,{tmp_path}/a.jpg,sorted,Bengal,0.9,,abc,\n', ',a.jpg\n']:
        (out/CSV_NAME).write_bytes(good + row.encode())
        with pytest.raises(sortmod.BadJournal, match=f'{CSV_NAME}: row 2 names the destination'): sort_images(ByName(), inc, out, copy=True)
        assert (out/CSV_NAME).read_bytes() == good + row.encode()


@pytest.mark.parametrize('opt', [('--bs', '0'), ('--bs', '-1'), ('--bs', '100000'), ('--min_prob', 'nan'), ('--min_prob', '-0.5'),
                                 ('--min_prob', '2'), ('--settle', '-1'), ('--settle', 'nan'), ('--settle', 'inf')])
def test_options_out_of_range_exit_2_in_one_line_before_loading(tmp_path, monkeypatch, opt):
    "Issue 21: options out of range exit 2 (`EXIT_USAGE`), as argparse does, before the model is loaded."
    def loaded(*a, **kw): raise AssertionError('the model was loaded')
    monkeypatch.setattr(sort_cli_mod, 'load_model', loaded)
    args = sort_main.command.parse(['nope', str(tmp_path/'nope'), '--out', str(tmp_path/'out'), *opt])
    err = io.StringIO()
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(err): sort_main(**args)
    assert e.value.code == 2 and err.getvalue().startswith(f'pet_breeds_sort: {opt[0]} must be between ')
    assert err.getvalue().count('\n') == 1 and not (tmp_path/'out').exists()


@pytest.mark.parametrize('own', [JOURNAL_NAME, CSV_NAME, LOCK_NAME])
def test_the_sorters_own_files_in_out_may_not_be_links(sample_dir, tmp_path, own):
    "A journal linked to a file of the user's was truncated when cleared; a linked CSV had rows appended or cut."
    inc, out, important = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg']), tmp_path/'out', tmp_path/'important.txt'
    important.write_text('a line the sorter did not write')   # no newline at the end: PredictionsCSV.repair would cut it
    out.mkdir(); os.symlink(important, out/own)
    with pytest.raises(sortmod.BadJournal, match=f'{own}: a link or not a regular file'): sort_images(ByName(), inc, out)
    assert important.read_text() == 'a line the sorter did not write' and checksums(inc) == {'Bengal_20.jpg': sha(sample_dir/'Bengal_20.jpg')}


def test_a_label_folder_that_is_a_link_out_of_out_is_not_written_through(sample_dir, tmp_path):
    inc, out, elsewhere = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg', sample_dir/'Abyssinian_20.jpg']), tmp_path/'out', tmp_path/'elsewhere'
    elsewhere.mkdir(); out.mkdir(); os.symlink(elsewhere, out/'Bengal')
    res = sort_images(ByName(), inc, out)
    assert list(elsewhere.iterdir()) == [] and [p.name for p in inc.iterdir()] == ['Bengal_20.jpg']   # left where it was
    assert res['errors'] == ["Bengal_20.jpg: OUT's Bengal is a link or not a folder; the file is left where it is"]
    assert [r['destination'] for r in res['rows']] == ['Abyssinian/Abyssinian_20.jpg']


@pytest.mark.parametrize('copy', [False, True])
def test_a_name_near_the_length_limit_is_sorted(sample_dir, tmp_path, copy):
    "A 249-byte name made a temporary name over 255 bytes: the copy failed, and so did every later run's recovery (ENAMETOOLONG)."
    inc, out = tmp_path/'in', tmp_path/'out'
    inc.mkdir(); name = 'Bengal_' + 'x' * 236 + '_1.jpg'
    shutil.copy(sample_dir/'Bengal_20.jpg', inc/name)
    inputs = checksums(inc)
    res = sort_images(ByName(), inc, out, copy=copy)
    assert res['errors'] == [] and check_exactly_once(inputs, out)[0]['source'] == name
    assert not (out/JOURNAL_NAME).read_bytes()


def test_a_csv_or_journal_line_python_cannot_parse_gives_no_traceback(sample_dir, tmp_path, monkeypatch):
    "A CSV field over csv's limit raised csv.Error, a journal line nested 10^5 deep RecursionError: tracebacks, every run."
    inc = make_incoming(tmp_path/'in', [sample_dir/'Bengal_20.jpg'])
    monkeypatch.setattr(sort_cli_mod, 'load_model', lambda *a, **kw: ByName())
    (tmp_path/'o1').mkdir(); (tmp_path/'o2').mkdir()
    (tmp_path/'o1'/CSV_NAME).write_text(','.join(COLUMNS) + '\n,a.jpg,,rejected,,,,' + 'x' * 200_000 + ',\n')
    with pytest.raises(SystemExit) as e: sort_main(model='m', incoming=str(inc), out=str(tmp_path/'o1'), copy=True)
    assert e.value.code == f'pet_breeds_sort: {tmp_path/"o1"/CSV_NAME}: not a CSV the sorter wrote (field larger than field limit (131072)); nothing was changed'
    (tmp_path/'o2'/JOURNAL_NAME).write_text('[' * 10**5 + ']' * 10**5 + '\n')
    sort_main(model='m', incoming=str(inc), out=str(tmp_path/'o2'), copy=True)   # a line that is no record of the sorter's is passed over
    assert [r['source'] for r in PredictionsCSV(tmp_path/'o2'/CSV_NAME).rows()] == ['Bengal_20.jpg']
