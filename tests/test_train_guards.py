"""pet_breeds_train as a careless or hostile user runs it (issue 21): an --out that holds someone else's files, an --out
inside the images, options out of range, one class, a hand-edited run.json, a loss that turns NaN. Each ends in a named
refusal (exit 2 for options, 1 otherwise) or a correct result, never in a deleted file or a NaN model with exit 0.
The refusals come before any training, so the file is fast; three short runs (ResNet18 at 32 px from random weights)
show what a rerun, --overwrite and a diverging loss leave behind."""
import hashlib, json
from pathlib import Path
import pytest
from conftest import make_synthetic_pets, run_cli

TINY = ('--arch', 'resnet18', '--no_pretrained', '--size', '32', '--item_size', '48', '--bs', '16', '--freeze_epochs', '1',
        '--epochs', '0', '--num_workers', '0')

@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return make_synthetic_pets(tmp_path_factory.mktemp('guards')/'images', n=12)

def train(data, out, *extra):
    return run_cli('pet_breeds_train', '--data', data, '--out', out, *TINY, '--lr', '1e-3', *extra)

def refused(r, code:int, *says):
    "The command stopped with `code` and one line on stderr holding every one of `says`, and no traceback."
    lines = [l for l in r.stderr.splitlines() if l.startswith('pet_breeds_train: ')]
    assert r.returncode == code and 'Traceback' not in r.stderr and len(lines) == 1, (r.returncode, r.stderr[-2000:])
    assert all(s in lines[0] for s in says), lines[0]
    return lines[0]

def digest(folder:Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}

def test_an_out_holding_foreign_files_is_refused_and_they_stay(images, tmp_path):
    out = tmp_path/'old'; (out/'checkpoints').mkdir(parents=True)
    (out/'checkpoints'/'important.txt').write_text('mine'); (out/'metrics.json').write_text('{"mine": 1}')
    before = digest(out)
    refused(train(images, out), 2, 'holds files pet_breeds did not write (checkpoints/important.txt)', '--overwrite', 'new or empty folder')
    refused(train(images, out, '--overwrite'), 2, 'even with --overwrite')   # checkpoints/ is the run's to replace
    assert digest(out) == before

def test_a_link_in_out_is_never_the_packages(images, tmp_path):
    mine = tmp_path/'mine.json'; mine.write_text('{"mine": 1}')
    out = tmp_path/'out'; out.mkdir(); (out/'metrics.json').symlink_to(mine)
    refused(train(images, out), 2, 'did not write (metrics.json)')
    refused(train(images, out, '--overwrite'), 2, 'even with --overwrite')   # replacing it would drop the link
    assert (out/'metrics.json').is_symlink() and mine.read_text() == '{"mine": 1}'

def test_out_and_data_apart(images, tmp_path):
    refused(train(images, images/'run'), 2, 'inside the images folder')
    assert not (images/'run').exists()                                          # refused before anything is written
    refused(train(images, images), 2, 'inside the images folder')
    refused(train(images, images.parent), 2, 'is inside it; choose an --out of its own')

@pytest.mark.parametrize('opt,value,says', [
    ('--bs', '0', '--bs is 0; it must be a whole number from 1'), ('--bs', '-4', '--bs is -4; it must be'), ('--epochs', '-1', '--epochs is -1; it must be'),
    ('--freeze_epochs', '-1', '--freeze_epochs is -1; it must be'), ('--lr', 'nan', '--lr is nan; it must be a finite number above 0'),
    ('--lr', 'inf', '--lr is inf'), ('--lr', '0', '--lr is 0.0'), ('--lr', '-0.1', '--lr is -0.1'),
    ('--valid_pct', '1', '--valid_pct is 1.0; it must be'), ('--valid_pct', '-0.2', '--valid_pct'), ('--size', '0', '--size is 0; it must be'),
    ('--item_size', '1000000', '--item_size is 1000000; it must be a whole number from 16 to 4096'), ('--num_workers', '-1', '--num_workers'),
    ('--min_scale', '0', '--min_scale'), ('--seed', '-1', '--seed'), ('--lr_find_its', '3', 'lr_find needs at least 10')])
def test_options_out_of_range_exit_2_before_any_work(images, tmp_path, opt, value, says):
    refused(train(images, tmp_path/'out', opt, value), 2, says)
    assert not (tmp_path/'out').exists()

def test_one_class_is_refused_before_training(tmp_path):
    one = make_synthetic_pets(tmp_path/'one', breeds=('Bengal',), n=8)
    refused(train(one, tmp_path/'out'), 2, 'every image is of one breed (Bengal)', 'two or more')

@pytest.mark.parametrize('run_json,says', [
    ({'options': {'bs': '64'}}, "--bs must be of type int, not '64'"),
    ({'options': {'epochs': -3}}, '--epochs is -3; it must be'),
    ({'options': {'resume': '.'}}, 'names a run to resume'),                 # was a RecursionError
    ({'options': ['bs', 64]}, "'options' is not an object"),                  # was a TypeError
    ({'options': {'colour': 'red'}}, "unknown option 'colour'"),
    ({'run': {}}, "unusable"), ('{"options": {', 'unusable')])
def test_a_hand_edited_run_json_is_named(tmp_path, run_json, says):
    f = tmp_path/'out'/'checkpoints'/'run.json'; f.parent.mkdir(parents=True)
    f.write_text(run_json if isinstance(run_json, str) else json.dumps(run_json))
    line = refused(run_cli('pet_breeds_train', '--resume', tmp_path/'out'), 1, str(f), says)
    assert 'start a new run' in line

def test_an_interrupted_run_is_resumed_or_overwritten_not_discarded(images, tmp_path):
    out = tmp_path/'out'; (out/'checkpoints').mkdir(parents=True); (out/'checkpoints'/'latest.json').write_text('{}')
    refused(train(images, out), 2, 'holds an interrupted run; continue it with --resume')

def test_a_rerun_replaces_its_own_run_and_a_diverging_one_exports_nothing(images, tmp_path):
    out = tmp_path/'run'
    assert train(images, out).returncode == 0
    (out/'model'/'model.onnx').write_bytes(b'the first weights')                 # as pet_breeds_export --onnx would leave it
    for f in ('predictions.csv', 'lr_find.png'): (out/f).write_text('an earlier run')   # a probe's; a run without --lr
    assert train(images, out).returncode == 0                                   # a rerun onto its own run: allowed ...
    assert not (out/'model'/'model.onnx').exists()                              # ... and no runtime runs the old network
    assert not (out/'predictions.csv').exists() and not (out/'lr_find.png').exists()   # nor a file passes for this run's
    assert not (out/'checkpoints').exists()
    before = digest(out)
    refused(run_cli('pet_breeds_train', '--data', images, '--out', out, *TINY, '--lr', '1e30'), 1,
            'the training loss became nan', 'no model was exported')           # Adam steps by ~lr: NaN by batch 2
    assert {k: v for k, v in digest(out).items() if not k.startswith('checkpoints/')} == before   # the earlier run, whole
    fresh = tmp_path/'fresh'
    refused(run_cli('pet_breeds_train', '--data', images, '--out', fresh, *TINY, '--lr', '1e30'), 1, 'became nan')
    assert not (fresh/'model').exists() and not (fresh/'metrics.json').exists()

def test_overwrite_writes_the_run_and_leaves_the_owners_files(images, tmp_path):
    out = tmp_path/'shared'; (out/'model').mkdir(parents=True)
    (out/'notes.txt').write_text('mine'); (out/'model'/'README.txt').write_text('mine too')
    refused(train(images, out), 2, 'did not write (model/README.txt, notes.txt)')
    r = train(images, out, '--overwrite')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out/'notes.txt').read_text() == 'mine' and (out/'model'/'README.txt').read_text() == 'mine too'
    assert (out/'model'/'model.safetensors').is_file() and json.loads((out/'metrics.json').read_text())['mode'] == 'finetune'

def test_the_plan_comes_first_and_an_hours_long_cpu_run_asks_for_yes(images, tmp_path, monkeypatch):
    """Issue 31: before anything is trained the command prints its plan (data, weights, recipe, this machine's
    estimate). Where the estimate on this CPU is over an hour it stops there with exit 2, naming the fast alternative
    and --yes, and trains nothing; with --yes it runs."""
    import torch
    import pet_breeds.train_cli as tc
    if torch.cuda.is_available(): pytest.skip('the hours guard is for CPU runs')
    monkeypatch.setattr(tc, 'machine_gflops', lambda seconds=0.2: 1e-6)   # a very slow CPU: any run takes hours
    r = train(images, tmp_path/'slow')
    refused(r, 2, 'would take about', "this machine's CPU", '--mode probe', '--yes')
    plan = [l for l in r.stdout.splitlines() if l.startswith('plan: ')]
    assert [l.split(':')[1].strip() for l in plan] == ['data', 'weights', 'recipe', 'estimate'], r.stdout
    assert 'random weights, as asked' in plan[1] and '--mode finetune' in plan[2] and ' h on this machine' in plan[3], plan
    assert not (tmp_path/'slow'/'model').exists() and not (tmp_path/'slow'/'metrics.json').exists()
    r = train(images, tmp_path/'yes', '--yes')
    assert r.returncode == 0 and (tmp_path/'yes'/'model'/'model.json').exists(), r.stderr[-2000:]
    assert r.stdout.index('plan: estimate') < r.stdout.index('wrote ')   # the plan before the run
