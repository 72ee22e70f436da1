"""The fast path must not cost accuracy: on real PETS photos, pretrained EfficientNet-Lite0 trained and
evaluated under bf16 autocast + channels_last reaches the validation error of plain fp32, within the
run-to-run noise of a 60-image validation set."""
import math
import numpy as np, torch
from fastai.vision.all import set_seed
from pet_breeds.data import pets_dataloaders
from pet_breeds.learner import pets_learner
from pet_breeds.train import Policy, Stage, choose_policy, fit_stages, predict_batches

PLAIN_FP32 = Policy('cpu', None, channels_last=False, reason='stock fastai on a CPU')

def train_stage1(sample_dir, policy):
    set_seed(42, reproducible=True)
    dls = pets_dataloaders(sample_dir, bs=32, size=128, item_size=160, num_workers=0)
    learn = pets_learner(dls, 'efficientnet_lite0')          # real ImageNet weights, installed from PyPI
    run = fit_stages(learn, [Stage(1, 3e-3, frozen=True)], policy=policy, show=False)
    return learn, run

def test_bf16_fast_path_error_agrees_with_fp32(sample_dir):
    (l32, r32), (l16, r16) = train_stage1(sample_dir, PLAIN_FP32), train_stage1(sample_dir, choose_policy('bf16', 'cpu'))
    assert r16['policy']['precision'] == 'bf16' and r32['policy']['precision'] == 'fp32'
    e32, e16 = r32['epochs'][-1]['error_rate'], r16['epochs'][-1]['error_rate']
    n = len(l32.dls.valid_ds)
    assert n == 60
    assert e32 < 0.25, e32            # pretrained features work, so two failures cannot "agree"
    p = max((e32 + e16) / 2, 1 / n)
    noise = math.sqrt(2 * p * (1 - p) / n)    # standard error of a difference of two error rates on n images
    assert abs(e32 - e16) <= 3 * noise, (e32, e16, noise)

def test_bf16_predictions_match_fp32_on_the_same_weights(sample_dir):
    learn, _ = train_stage1(sample_dir, PLAIN_FP32)
    batches = list(learn.dls.valid)
    p32 = predict_batches(learn.model, batches, PLAIN_FP32).softmax(1)
    p16 = predict_batches(learn.model, batches, choose_policy('bf16', 'cpu')).softmax(1)
    pauto = predict_batches(learn.model, batches, choose_policy('auto', 'cpu')).softmax(1)
    assert (p32.argmax(1) == p16.argmax(1)).float().mean() >= 0.95
    assert (p32 - p16).abs().mean() < 0.02, (p32 - p16).abs().mean()   # bf16 keeps about 3 significant digits
    assert (p32 - pauto).abs().max() < (1e-4 if choose_policy('auto', 'cpu').dtype is None else 0.05)
