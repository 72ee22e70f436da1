"""Training survives a kill: a real `pet_breeds_train` process is sent SIGKILL after a checkpoint of
stage 2, then `pet_breeds_train --resume OUT` finishes the run with the metrics and weights of a
run that was never interrupted (tolerance 1e-5: the same computations in the same order on a CPU)."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
from safetensors.torch import load_file
from conftest import make_synthetic_pets

EXE = shutil.which('pet_breeds_train') or str(Path(sys.executable).parent/'pet_breeds_train')
ARGS = ['--arch', 'resnet18', '--no_pretrained', '--freeze_epochs', '2', '--epochs', '4', '--lr', '1e-3',
        '--size', '32', '--item_size', '48', '--bs', '16', '--num_workers', '0']

ONE_THREAD = {**os.environ, 'OMP_NUM_THREADS': '1'}   # the two runs side by side, one core each (the same arithmetic in both)

def train(data, out, *extra):
    return subprocess.run([EXE, '--data', str(data), '--out', str(out), *ARGS, *extra], capture_output=True, text=True, timeout=600)

def latest(out):
    try: return json.loads((out/'checkpoints'/'latest.json').read_text())['checkpoint']
    except (OSError, ValueError, KeyError): return None

def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = make_synthetic_pets(tmp_path/'images', n=12, size=48)
    whole = subprocess.Popen([EXE, '--data', str(data), '--out', str(tmp_path/'whole'), *ARGS], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ONE_THREAD)   # the uninterrupted run, beside the one killed
    killed = tmp_path/'killed'
    p = subprocess.Popen([EXE, '--data', str(data), '--out', str(killed), *ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=ONE_THREAD)
    deadline = time.time() + 300
    while latest(killed) not in {f'stage2-epoch{i}' for i in range(3)} and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, 'the run ended before it could be killed: make it longer'
    assert not (killed/'metrics.json').exists() and latest(killed).startswith('stage2')
    resumed = subprocess.run([EXE, '--resume', str(killed)], capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming after stage 2' in resumed.stdout
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-3000:]
    a, b = (json.loads((d/'metrics.json').read_text()) for d in (tmp_path/'whole', killed))
    assert [(e['stage'], e['epoch']) for e in b['epochs']] == [(1, 0), (1, 1), *[(2, i) for i in range(4)]]
    for ea, eb in zip(a['epochs'], b['epochs']):
        assert abs(ea['valid_loss'] - eb['valid_loss']) < 1e-5 and ea['error_rate'] == eb['error_rate'], (ea, eb)
    wa, wb = (load_file(d/'model'/'model.safetensors') for d in (tmp_path/'whole', killed))
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() < 1e-5 for k in wa)
    assert not (killed/'checkpoints').exists()        # a finished run leaves no checkpoints behind
