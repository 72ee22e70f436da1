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

def test_bench_deploy_measures_both_runtimes(tmp_path):
    "`--deploy`: per architecture, the exported files' sizes and the per-image latency of PyTorch and onnxruntime."
    exe = shutil.which('pet_breeds_bench') or str(Path(__file__).parents[1]/'.venv'/'bin'/'pet_breeds_bench')
    out = tmp_path/'deploy.json'
    r = subprocess.run([exe, '--deploy', '--archs', 'resnet18,efficientnet_lite0', '--predict_images', '2', '--json', str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = {row['arch']: row for row in res['rows']}
    assert set(rows) == {'resnet18', 'efficientnet_lite0'} and res['images'] == 2
    assert rows['efficientnet_lite0']['weights'] == 'ImageNet' and rows['resnet18']['weights'] == 'random'
    # ResNet18 holds ~11.7M float32 weights (~45 MB), EfficientNet-Lite0 ~3.4M (~13 MB), in either file
    assert 40 < rows['resnet18']['onnx_mb'] < 50 and 10 < rows['efficientnet_lite0']['onnx_mb'] < 20, rows
    for row in rows.values():
        assert abs(row['onnx_mb'] - row['safetensors_mb']) < 2 and row['pytorch_ms'] > 0 and row['onnxruntime_ms'] > 0
        assert f"{row['arch']:<20}" in r.stdout
