"""`pet_breeds_export MODEL --space DIR`: the Gradio app folder for a Hugging Face Space (nbs/50_deploy.space.ipynb,
nbs/51_deploy.ipynb), on the session's one trained model. Gradio itself is not installed here: tests/space_check.py
runs the folder in a venv holding only its requirements.txt, in Chromium; these tests check what it is made of."""
import ast, hashlib, json, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from conftest import run_cli
from pet_breeds import space
from pet_breeds.runtime import OnnxModel

SPACE_OWN = ['README.md', 'app.py', 'model.json', 'model.onnx', 'pet_runtime.py', 'requirements.txt']
# a Python where the package, PyTorch and fastai cannot be imported: a Space's
BLOCKED = "import sys\nfor m in ('pet_breeds', 'torch', 'torchvision', 'fastai', 'fastcore', 'timm'): sys.modules[m] = None\n"

def digest(folder:Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}

@pytest.fixture(scope='module')
def exported(tiny_run, tmp_path_factory):
    "`(dest, result, model digest before)`: the tiny model's Space, written once by the command."
    before = digest(tiny_run.model)
    dest = tmp_path_factory.mktemp('space')/'pets-space'
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', dest)
    assert r.returncode == 0, r.stderr[-3000:]
    return dest, r, before

def test_the_folder_is_a_complete_app(exported, tiny_run):
    dest, r, before = exported
    assert r.stdout.startswith(f"wrote {dest}: a Gradio app (README.md, app.py, examples, model.json, model.onnx"), r.stdout
    assert digest(tiny_run.model) == before   # nothing written beside the model: it was exported in a temporary copy
    meta = json.loads((dest/'model.json').read_text())
    examples = sorted(p.name for p in (dest/'examples').iterdir())
    assert len(examples) == 4 and set(examples) <= set(meta['valid_files'])   # its own validation photos
    assert {n.rsplit('_', 1)[0] for n in examples} == set(meta['vocab'])      # one per class first
    assert sorted(p.name for p in dest.iterdir()) == sorted(SPACE_OWN + ['examples'])
    assert meta['onnx']['sha256'] == hashlib.sha256((dest/'model.onnx').read_bytes()).hexdigest()

def test_requirements_and_readme(exported, tiny_run):
    dest = exported[0]
    reqs = (dest/'requirements.txt').read_text().split()
    assert reqs[0] == f'gradio=={space.GRADIO_VERSION}' and not any(w in r.lower() for r in reqs for w in ('torch', 'fastai'))
    readme = (dest/'README.md').read_text()
    front, card = readme.split('---\n')[1], readme.split('---\n', 2)[2]
    for line in ('sdk: gradio', f'sdk_version: {space.GRADIO_VERSION}', 'app_file: app.py', 'emoji: 🐾'):
        assert line in front.splitlines(), line
    acc = tiny_run.metrics['epochs'][-1]['accuracy']
    assert f"accuracy: {acc:.1%} top-1 on the" in card and '## Limits' in card and '## Data' in card
    assert f"{acc:.1%} top-1" in (dest/'app.py').read_text()   # the app shows it too

def test_the_folder_imports_nothing_from_the_package(exported):
    dest = exported[0]
    for fn in ('app.py', 'pet_runtime.py'):
        mods = set()
        for node in ast.walk(ast.parse((dest/fn).read_text())):
            if isinstance(node, ast.Import): mods |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0: mods.add(node.module.split('.')[0])
        assert not mods & {'pet_breeds', 'torch', 'torchvision', 'fastai', 'fastcore', 'timm'}, (fn, mods)
    assert space.undefined_names((dest/'pet_runtime.py').read_text()) == []

def test_the_vendored_runtime_predicts_as_the_package(exported, tiny_run):
    "pet_runtime.py, where pet_breeds cannot be imported, gives pet_breeds.runtime's labels and probabilities (and errors)."
    dest = exported[0]
    photos = sorted(map(str, tiny_run.held.iterdir())) + [str(dest/'README.md')]   # and a file that is no image
    code = BLOCKED + ("import json\nfrom pet_runtime import OnnxModel\n"
                      f"print(json.dumps(OnnxModel.load('model.onnx').predict_many({photos!r}, k=3)))")
    r = subprocess.run([sys.executable, '-c', code], cwd=dest, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got, want = json.loads(r.stdout), OnnxModel.load(dest/'model.onnx').predict_many(photos, k=3)
    assert [g.get('error') for g in got] == [w.get('error') for w in want] and got[-1]['error'].endswith('not an image file (no image format recognised)')
    assert [[l for l, _ in g['top']] for g in got[:-1]] == [[l for l, _ in w['top']] for w in want[:-1]]
    np.testing.assert_allclose([[p for _, p in g['top']] for g in got[:-1]], [[p for _, p in w['top']] for w in want[:-1]], atol=1e-6)
    # and PyTorch's, through the command, within the export's own check
    pt = run_cli('pet_breeds_predict', tiny_run.model, *photos[:-1], '--json', '--precision', 'fp32', '--no_tta')
    torch_top = [json.loads(l)['top'] for l in pt.stdout.splitlines()]
    assert [[l for l, _ in t] for t in torch_top] == [[l for l, _ in g['top']] for g in got[:-1]]
    np.testing.assert_allclose([[p for _, p in t] for t in torch_top], [[p for _, p in g['top']] for g in got[:-1]], atol=1e-4)

def test_a_non_empty_folder_is_refused_unless_overwrite(exported, tiny_run, tmp_path):
    dest = tmp_path/'space'
    dest.mkdir(); (dest/'NOTES.md').write_text('mine')
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', dest)
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'not empty; pass --overwrite' in r.stderr, r.stderr
    assert sorted(p.name for p in dest.iterdir()) == ['NOTES.md']
    (dest/'app.py').write_text('an old app')
    (dest/'examples').mkdir(); (dest/'examples'/'old.jpg').write_bytes(b'an earlier export')
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', dest, '--overwrite')
    assert r.returncode == 0, r.stderr[-2000:]
    assert (dest/'NOTES.md').read_text() == 'mine'   # the user's file is kept
    assert (dest/'app.py').read_text() == (exported[0]/'app.py').read_text() and not (dest/'examples'/'old.jpg').exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(SPACE_OWN + ['examples', 'NOTES.md'])
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', dest/'README.md')
    assert r.returncode == 2 and 'a file, not a folder' in r.stderr

def test_a_model_that_cannot_export_names_its_architecture(tiny_run, tmp_path, monkeypatch):
    import torch
    def fail(*a, **k): raise RuntimeError("Unsupported: an operator the exporter does not know\nmore detail")
    monkeypatch.setattr(torch.onnx, 'export', fail)
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', tmp_path/'space')
    assert r.returncode == 1 and 'Traceback' not in r.stderr and r.stderr.strip().count('\n') == 0, r.stderr
    assert 'resnet18 (finetune) cannot be exported to ONNX (RuntimeError: Unsupported: an operator' in r.stderr, r.stderr
    assert not (tmp_path/'space').exists() or not any((tmp_path/'space').iterdir())

def one_line_error(r, *needles):
    err = r.stderr.strip()
    assert r.returncode in (1, 2) and '\n' not in err and 'Traceback' not in err, r.stderr[-3000:]
    for n in needles: assert n in err, err

def test_push_without_a_token_refuses_before_writing(tiny_run, tmp_path):
    env = {'HF_HOME': tmp_path/'hf', 'HF_TOKEN': '', 'HUGGING_FACE_HUB_TOKEN': ''}   # nobody logged in
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', tmp_path/'space', '--push', 'someone/pets', env=env)
    one_line_error(r, 'pet_breeds_export: --push someone/pets: no Hugging Face token')
    assert not (tmp_path/'space').exists()
    r = run_cli('pet_breeds_export', tiny_run.model, '--space', tmp_path/'space', '--push', 'not-a-space-name')
    one_line_error(r, 'name the Space as USER/SPACE')

def test_push_without_network_fails_in_one_line(exported, tmp_path):
    """The tests run offline (conftest's guard, in subprocesses too): the upload fails, saying so, and the folder is
    written. The model: the Space's own folder, whose model.onnx is current (nothing to export, no PyTorch needed)."""
    env = {'HF_HOME': tmp_path/'hf', 'HF_TOKEN': 'hf_not_a_real_token', 'HF_HUB_DISABLE_TELEMETRY': '1'}
    r = run_cli('pet_breeds_export', exported[0], '--space', tmp_path/'space', '--push', 'someone/pets', env=env, timeout=300)
    one_line_error(r, 'pet_breeds_export: --push someone/pets: the upload failed (', 'push it again when online')
    assert (tmp_path/'space'/'app.py').is_file()

def test_push_without_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)   # import huggingface_hub now fails
    with pytest.raises(space.PetBreedsError, match=r'^--push needs huggingface_hub: pip install huggingface_hub$'):
        space.push_space(tmp_path, 'someone/pets')
