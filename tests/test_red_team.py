"""Issue 21's red-team pass, the parts not pinned beside their feature (the model file's: test_model_files.py; the
sorter's: test_sort.py; the train command's: test_train_guards.py): every command refuses an option out of range
with one line and exit 2 before it loads anything, and prints names that came from outside escaped."""
import shutil
import pytest
from conftest import run_cli

NO_MODEL = 'no/such/model'   # loading it fails with exit 1: a check that ran after loading would never be reached

@pytest.mark.parametrize('args,says', [
    (['pet_breeds_predict', NO_MODEL, 'x.jpg', '--k', '0'], '--k is 0; it must be a whole number from 1'),
    (['pet_breeds_predict', NO_MODEL, 'x.jpg', '--k', '-1'], '--k is -1'),
    (['pet_breeds_predict', NO_MODEL, 'x.jpg', '--bs', '0'], '--bs is 0'),
    (['pet_breeds_predict', NO_MODEL, 'x.jpg', '--bs', '-1'], '--bs is -1'),
    (['pet_breeds_imagenet', 'x.jpg', '--k', '0'], '--k is 0'),
    (['pet_breeds_imagenet', 'x.jpg', '--bs', '0'], '--bs is 0'),
    (['pet_breeds_imagenet', 'x.jpg', '--arch', 'no_such_arch'], "unknown arch 'no_such_arch'; choose one of: resnet18"),
    (['pet_breeds_interpret', NO_MODEL, '--top_losses', '0'], '--top_losses is 0; it must be a whole number from 1 to 100'),
    (['pet_breeds_interpret', NO_MODEL, '--bs', '0'], '--bs is 0'),
    (['pet_breeds_app', NO_MODEL, '--port', '70000'], '--port is 70000; it must be a whole number from 1 to 65535'),
    (['pet_breeds_app', NO_MODEL, '--max_mb', 'nan'], '--max_mb is nan; it must be a finite number above 0'),
    (['pet_breeds_app', NO_MODEL, '--max_mb', 'inf'], '--max_mb is inf'),   # above 0, yet no size
    (['pet_breeds_app', NO_MODEL, '--k', '0'], '--k is 0'),
    (['pet_breeds_export', NO_MODEL, '--opset', '9'], '--opset is 9; it must be a whole number from 13 to 20'),
    (['pet_breeds_bench', '--bs', '0'], '--bs is 0'),
    (['pet_breeds_bench', '--synthetic', '-5'], '--synthetic is -5'),
])
def test_an_option_out_of_range_exits_2_with_one_line_before_loading(args, says):
    r = run_cli(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines == [f'{args[0]}: {lines[0].split(": ", 1)[1]}'] and says in lines[0], r.stderr

def test_predict_prints_names_from_outside_escaped(tiny_model, sample_dir, tmp_path):
    """A file name holding an escape sequence or a right-to-left override is printed escaped, so it cannot clear the
    screen or reorder what the terminal shows; the prediction is still made."""
    name = 'cat\x1b[2J\u202egpj.exe.jpg'
    shutil.copy(next(sample_dir.glob('*.jpg')), tmp_path/name)
    r = run_cli('pet_breeds_predict', tiny_model[0], tmp_path/name, '--k', '1')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{tmp_path}/cat\\x1b[2J\\u202egpj.exe.jpg: ") and '%' in r.stdout, r.stdout
    assert '\x1b' not in r.stdout and '\u202e' not in r.stdout

def test_a_tampered_feature_cache_entry_is_recomputed_not_trained_on(tmp_path):
    """The feature cache ($PET_BREEDS_CACHE) is input: an entry holding NaN or a vector of another shape is a miss, and an
    unwritable cache folder is a warning, never a stop (the cache only saves time)."""
    import torch, warnings
    from pet_breeds.features import FeatureCache
    c = FeatureCache(tmp_path, 'key')
    c.put('ab', torch.ones(4)); c.put('cd', torch.tensor([1., float('nan')])); c.put('ef', torch.ones(2, 2))
    assert torch.equal(c.get('ab'), torch.ones(4)) and c.get('cd') is None and c.get('ef') is None
    (tmp_path/'a_file').write_text('')
    with pytest.warns(UserWarning, match='not written'): FeatureCache(tmp_path/'a_file', 'key').put('ab', torch.ones(4))
