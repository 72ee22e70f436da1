"""Data-parallel training in two real CPU processes (gloo), started by `pet_breeds_train --distributed 2`
through `accelerate launch`: only the main process writes, every process ends with the same weights,
the reported metrics are a single process's evaluation of the final model on the whole validation
set (9 images: an odd count, so the processes' shares are padded), and a run killed with SIGKILL
resumes in two processes to the metrics and weights of the uninterrupted run (tolerance 1e-5)."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import psutil, pytest, torch
from safetensors.torch import load_file
from conftest import make_synthetic_pets

EXE = shutil.which('pet_breeds_train') or str(Path(sys.executable).parent/'pet_breeds_train')
N_PER_BREED = 12                      # 4 breeds x 12 = 48 images: 39 to train, 9 to validate
ARGS = ['--mode', 'finetune', '--arch', 'resnet18', '--no_pretrained', '--freeze_epochs', '1', '--epochs', '4',
        '--size', '32', '--item_size', '48', '--bs', '8', '--num_workers', '0',
        '--precision', 'fp32']   # figures compared below are fp32's, on every kind of CPU (auto is bf16 where native)
EXPECTED = ['confusion.png', 'loss.png', 'lr_find.png', 'metrics.json', 'model']

def cmd(data, out, *extra): return [EXE, '--distributed', '2', '--data', str(data), '--out', str(out), *ARGS, *extra]

def run(args):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_synthetic_pets(tmp_path_factory.mktemp('ddp')/'images', n=N_PER_BREED, size=48)

@pytest.fixture(scope='module')
def whole(data):
    out = data.parent/'whole'
    r = run(cmd(data, out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return out, r

def metrics(out): return json.loads((out/'metrics.json').read_text())

def test_two_processes_train_one_model_and_only_the_main_one_writes(whole):
    out, r = whole
    m = metrics(out)
    d = m['distributed']
    assert d['processes'] == 2 and d['backend'] == 'gloo'
    assert len(d['weights_sha256']) == 2 and d['weights_sha256'][0] == d['weights_sha256'][1]
    # each process took half of every epoch: 39 training images in batches of 8 are 4 batches alone, 2 per process
    assert len(m['batch_losses']) == (1 + 4) * 2
    assert sorted(p.name for p in out.iterdir()) == EXPECTED        # no second copy, no temporary files, no checkpoints
    assert sorted(p.name for p in (out/'model').iterdir()) == ['model.json', 'model.safetensors']
    for line in ('precision:', 'lr_find: 20 iterations', 'estimated run:', 'wrote '):
        assert r.stdout.count(line) == 1, (line, r.stdout)             # printed by the main process only

def test_the_digests_are_those_of_the_exported_weights(whole):
    from pet_breeds.distrib import weights_digest
    from pet_breeds.learner import pets_learner
    from pet_breeds.data import pets_dataloaders
    out, _ = whole
    digest = metrics(out)['distributed']['weights_sha256'][0]
    dls = pets_dataloaders(out.parent/'images', bs=8, item_size=48, size=32, num_workers=0)
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    assert weights_digest(learn.model) != digest                       # a fresh model is not the trained one
    learn.model.load_state_dict(load_file(out/'model'/'model.safetensors'))
    assert weights_digest(learn.model) == digest
    with torch.no_grad(): next(learn.model.parameters()).view(-1)[0] += 1e-6
    assert weights_digest(learn.model) != digest                       # the digest sees one changed weight

def test_the_metrics_cover_the_whole_validation_set_once(whole):
    from pet_breeds.learner import pets_learner
    from pet_breeds.data import pets_dataloaders
    out, _ = whole
    m = metrics(out)
    dls = pets_dataloaders(out.parent/'images', bs=8, item_size=48, size=32, num_workers=0)
    assert len(dls.valid_ds) == 9 and sum(map(sum, m['confusion']['matrix'])) == 9
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    learn.model.load_state_dict(load_file(out/'model'/'model.safetensors'))
    with learn.no_bar(), learn.no_logging(): valid_loss, err, acc = learn.validate()
    last = m['epochs'][-1]
    assert m['policy']['precision'] == 'fp32'      # plain validate() computes fp32: the run must have too
    assert abs(last['valid_loss'] - valid_loss) < 1e-4, (last, valid_loss)   # one process, the final weights, all 9 images
    assert abs(last['error_rate'] - err) < 1e-6 and abs(last['accuracy'] - acc) < 1e-6, (last, err, acc)

def latest(out):
    try: return json.loads((out/'checkpoints'/'latest.json').read_text())['checkpoint']
    except (OSError, ValueError, KeyError): return None

def test_sigkill_then_resume_in_two_processes(whole, data):
    killed = data.parent/'killed'
    p = subprocess.Popen(cmd(data, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    deadline = time.time() + 600
    # any stage-2 checkpoint but the last (4 epochs): the run's epochs take a fraction of a second each
    before_last = {f'stage2-epoch{i}' for i in range(3)}
    while latest(killed) not in before_last and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    try: procs = psutil.Process(p.pid).children(recursive=True)   # torchrun's workers have sessions of their own
    except psutil.NoSuchProcess: pytest.fail('the run ended before it could be killed: make it longer')
    p.send_signal(signal.SIGKILL)
    for c in procs: c.send_signal(signal.SIGKILL)                    # the launcher and both processes, as a crash would
    p.wait(); psutil.wait_procs(procs, timeout=60)
    assert p.returncode == -signal.SIGKILL, 'the run ended before it could be killed: make it longer'
    assert not (killed/'metrics.json').exists() and latest(killed).startswith('stage2')
    r = run([EXE, '--distributed', '2', '--resume', str(killed)])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.count('resuming after stage 2') == 1
    a, b = metrics(whole[0]), metrics(killed)
    assert [(e['stage'], e['epoch']) for e in b['epochs']] == [(1, 0), *[(2, i) for i in range(4)]]
    for ea, eb in zip(a['epochs'], b['epochs']):
        assert abs(ea['valid_loss'] - eb['valid_loss']) < 1e-5 and ea['error_rate'] == eb['error_rate'], (ea, eb)
    wa, wb = (load_file(d/'model'/'model.safetensors') for d in (whole[0], killed))
    assert wa.keys() == wb.keys() and all((wa[k].float() - wb[k].float()).abs().max() < 1e-5 for k in wa)
    assert b['distributed']['weights_sha256'][0] == b['distributed']['weights_sha256'][1]
    assert not (killed/'checkpoints').exists()
