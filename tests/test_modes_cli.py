"The other transfer-learning setups through pet_breeds_train: --mode features and --mode cut."
import json
from pathlib import Path
from conftest import run_cli, SAMPLE_IMAGES

def _train(sample_dir, out, *args):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', out, '--bs', '32', '--lr', '3e-3', *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out/'metrics.json').read_text())

def test_features_mode_caches_across_runs_and_exports_a_working_model(sample_dir, tmp_path):
    args = ('--arch', 'efficientnet_lite0', '--mode', 'features', '--epochs', '4', '--size', '96', '--item_size', '128',
            '--cache_dir', tmp_path/'cache')
    first = _train(sample_dir, tmp_path/'a', *args)
    second = _train(sample_dir, tmp_path/'b', *args)
    assert first['feature_cache']['misses'] == SAMPLE_IMAGES and second['feature_cache']['misses'] == 0
    assert second['feature_cache']['hits'] == SAMPLE_IMAGES
    assert {e['stage'] for e in second['epochs']} == {1} and len(second['epochs']) == 4
    assert set(second['epochs'][0]) >= {'stage', 'epoch', 'train_loss', 'valid_loss', 'error_rate', 'accuracy', 'seconds'}
    assert second['epochs'][-1]['error_rate'] < 0.25
    r = run_cli('pet_breeds_predict', tmp_path/'b'/'model', sample_dir/'Bengal_10.jpg', '--json')
    assert r.returncode == 0 and json.loads(r.stdout)['top'][0][0] in second['vocab']

def test_cut_mode_trains_the_seed_model_and_exports_it(sample_dir, tmp_path):
    m = _train(sample_dir, tmp_path/'cut', '--arch', 'vgg16', '--no-pretrained', '--mode', 'cut',
               '--cut_layer', 'block1_pool', '--epochs', '1', '--size', '64', '--item_size', '96')
    assert m['settings']['mode'] == 'cut' and m['settings']['cut_layer'] == 'block1_pool'
    meta = json.loads((tmp_path/'cut'/'model'/'model.json').read_text())
    assert meta['mode'] == 'cut' and meta['cut_layer'] == 'block1_pool'
    r = run_cli('pet_breeds_predict', tmp_path/'cut'/'model', sample_dir/'Abyssinian_1.jpg', '--json')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['top'][0][0] in m['vocab']

def test_cut_mode_offline_needs_the_vgg16_weights_or_no_pretrained(sample_dir, tmp_path):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--arch', 'vgg16', '--mode', 'cut',
                env={'TORCH_HOME': str(tmp_path/'torch')})
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert 'vgg16-397923af.pth' in r.stderr and '--no-pretrained' in r.stderr

def test_unknown_mode_is_refused(sample_dir, tmp_path):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--mode', 'magic')
    assert r.returncode != 0 and "unknown mode 'magic'; choose one of: " in r.stderr and 'Traceback' not in r.stderr
