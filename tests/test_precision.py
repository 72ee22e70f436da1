"""The precision policy, each branch forced, so both run on any CPU (native bf16 or not).

The fast path must not cost accuracy: on real PETS photos, pretrained EfficientNet-Lite0 trained and
evaluated under bf16 autocast + channels_last reaches the validation error of plain fp32, and it really
computes in bf16 (a run that silently fell back to fp32 would pass an accuracy check alone). Every
figure below says which policy it expects; emulated bf16 is slow on CPUs without it, so the data is
the 81 committed photos at 96 px."""
import math
from unittest import mock
import pytest, torch
from fastai.vision.all import Callback, set_seed
from pet_breeds import precision as T
from pet_breeds.data import pets_dataloaders
from pet_breeds.learner import pets_learner
from pet_breeds.precision import AUTO, FastPath, Policy, choose_policy, predict_batches
from pet_breeds.train import Stage, fit_stages

PLAIN_FP32 = Policy('cpu', None, channels_last=False, reason='stock fastai on a CPU')
BF16 = choose_policy('bf16', 'cpu')

class DtypeSpy(Callback):
    "The dtype of every prediction, seen before `MixedPrecision` casts it back to fp32."
    order = FastPath.order - 1
    def before_fit(self): self.dtypes = set()
    def after_pred(self): self.dtypes.add(self.pred.dtype)

def train_stage1(sample_dir, policy):
    set_seed(42, reproducible=True)
    dls = pets_dataloaders(sample_dir, bs=32, size=96, item_size=112, num_workers=0)
    spy = DtypeSpy()
    learn = pets_learner(dls, 'efficientnet_lite0', cbs=[spy])   # real ImageNet weights, installed from PyPI
    run = fit_stages(learn, [Stage(1, 3e-3, frozen=True)], policy=policy, show=False)
    return learn, run, spy.dtypes

@pytest.fixture(scope='module')
def runs(sample_dir):
    "Stage 1 trained twice, from the same seed: plain fp32 and the bf16 fast path."
    return train_stage1(sample_dir, PLAIN_FP32), train_stage1(sample_dir, BF16)

def test_bf16_training_computes_in_bf16_and_its_error_agrees_with_fp32(runs):
    (l32, r32, d32), (l16, r16, d16) = runs
    assert (r16['policy']['precision'], r32['policy']['precision']) == ('bf16', 'fp32')
    assert d16 == {torch.bfloat16} and d32 == {torch.float32}   # autocast on for bf16 only, in training and validation
    e32, e16 = r32['epochs'][-1]['error_rate'], r16['epochs'][-1]['error_rate']
    n = len(l32.dls.valid_ds)
    assert n == 16   # 20% of the 81 photos
    assert e32 <= 0.25, e32            # pretrained features work, so two failures cannot "agree"
    p = max((e32 + e16) / 2, 1 / n)
    noise = math.sqrt(2 * p * (1 - p) / n)    # standard error of a difference of two error rates on n images
    assert abs(e32 - e16) <= 3 * noise, (e32, e16, noise)

def test_each_path_predicts_under_its_row_of_the_table(runs):
    "bf16 prediction is close to fp32 and not equal (autocast ran); 'auto' gives each path its row, on either kind of CPU."
    learn = runs[0][0]
    batches = list(learn.dls.test_dl([*learn.dls.train_ds.items, *learn.dls.valid_ds.items], bs=32))
    p32 = predict_batches(learn.model, batches, PLAIN_FP32).softmax(1)
    p16 = predict_batches(learn.model, batches, BF16).softmax(1)
    assert len(p32) == 81
    assert (p32.argmax(1) == p16.argmax(1)).float().mean() >= 0.95
    assert 0 < (p32 - p16).abs().mean() < 0.02, (p32 - p16).abs().mean()   # bf16 keeps about 3 significant digits
    for native in (True, False):                 # both kinds of CPU, whatever this one is
        with mock.patch.object(T, 'native_bf16_cpu', lambda: native):
            assert choose_policy('auto', 'cpu', 'train').name == ('bf16' if native else 'fp32')
            for path in ('predict', 'features', 'probe'):
                assert choose_policy('auto', 'cpu', path).name == 'fp32'
            if native:                           # where training would take bf16, prediction's default is still fp32
                pauto = predict_batches(learn.model, batches).softmax(1)
                assert (p32 - pauto).abs().max() < 1e-4
