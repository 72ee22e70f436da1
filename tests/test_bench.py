"`pet_breeds_bench` from the shell, on a tiny synthetic folder: it runs, prints its table and writes every figure the README quotes."
import json, shutil, subprocess
from pathlib import Path

KEYS = {'train_speedup_frozen', 'train_speedup_unfrozen', 'ceiling_ratio_unfrozen', 'predict_speedup',
        'projected_recipe_minutes', 'policy', 'machine', 'stock_frozen', 'stock_unfrozen', 'package_frozen',
        'package_unfrozen', 'ceiling_unfrozen', 'predict', 'package_frozen_train_bn'}

def test_bench_command_smoke(tmp_path):
    exe = shutil.which('pet_breeds_bench') or str(Path(__file__).parents[1]/'.venv'/'bin'/'pet_breeds_bench')
    out = tmp_path/'bench.json'
    r = subprocess.run([exe, '--synthetic', '32', '--arch', 'resnet18', '--bs', '8', '--size', '64', '--item_size', '96',
                        '--batches', '2', '--predict_images', '8', '--json', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'train, unfrozen epoch' in r.stdout and 'full recipe on PETS' in r.stdout, r.stdout
    res = json.loads(out.read_text())
    assert KEYS <= set(res), KEYS - set(res)
    for k in ('stock_frozen', 'stock_unfrozen', 'package_frozen', 'package_unfrozen', 'ceiling_unfrozen'):
        assert res[k]['train_img_s'] > 0 and res[k]['peak_mb'] > 100, (k, res[k])
    assert res['predict']['batched_img_s'] > 0 and res['predict']['per_image_img_s'] > 0
    assert res['settings']['images'] == 32 and res['machine']['cores'] >= 1
    assert set(res['projected_recipe_minutes']) == {'stock', 'package'}

def test_bench_rejects_data_and_synthetic_together(tmp_path):
    exe = shutil.which('pet_breeds_bench') or str(Path(__file__).parents[1]/'.venv'/'bin'/'pet_breeds_bench')
    r = subprocess.run([exe, '--data', str(tmp_path), '--synthetic', '8'], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'pass --data or --synthetic, not both' in r.stderr, (r.returncode, r.stderr[-2000:])
