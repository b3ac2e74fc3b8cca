"""Data-dependent initialisation of a seeded zoo model, so its output depends on its input.

Why: seeded random weights with default batch-norm statistics (mean 0, variance 1) make the
activations of a deep network vanish or explode, and whatever survives is dominated by what every
input shares: mobilenet_v1's outputs were about 1e-16, with one top-1 class for every input. Then a
runtime that ignored its input would pass the agreement check (issue 26). Two cheap steps over a
handful of natural images (lab.models.natural, INIT_SEED: other crops than the reference set's)
fix that:

1. batch-norm statistics recalibrated in one forward pass: per-channel means, one variance per
   layer, so each layer's activations are centred with unit variance on real images while its
   channels keep their relative scale; layers without batch norm (a conv or linear net) are
   scaled LSUV-style instead, one layer at a time, so their outputs keep unit variance;
2. the classifier centred: the last Linear's bias becomes -W . (mean feature over these images), so
   logits measure how an input differs from the others, not what all inputs share.

Only values change (same layers, same ops), so latency does not. Runs inside lab.models.build's
export worker, after paddle.seed and construction: both exports compute the same values.
"""
from __future__ import annotations

from typing import Any

INIT_IMAGES = 8  # forward passes over this many images: seconds even for resnet50 on one core
INIT_SEED = 3000  # natural.images seed: not the reference set's (1000) nor calibration's (2000)


def informative(layer: Any, inputs: list[dict[str, Any]]) -> str:
    """Apply the initialisation in place when the model has one image input; what was done."""
    from lab.models import natural
    if len(inputs) != 1 or not natural.is_image(inputs[0]["run_shape"], inputs[0]["dtype"]):
        return ""
    import paddle
    from paddle import nn
    from paddle.nn.layer.norm import _BatchNormBase
    spec = inputs[0]
    shape = list(spec["run_shape"])
    x = natural.images(shape, INIT_IMAGES, INIT_SEED, spec["dtype"])
    x = paddle.to_tensor(x.reshape([INIT_IMAGES * shape[0]] + shape[1:]))
    bns = [m for m in layer.sublayers() if isinstance(m, _BatchNormBase)]
    done = [] if bns else [_lsuv(layer, x)]
    heads = [m for m in layer.sublayers() if isinstance(m, nn.Linear)]
    head = heads[-1] if heads and heads[-1].bias is not None else None
    if not bns and head is None:
        return ", ".join(d for d in done if d)
    feats: list[Any] = []
    hooks = [bn.register_forward_pre_hook(_set_bn_stats) for bn in bns]
    if head is not None:
        hooks.append(head.register_forward_pre_hook(lambda _m, ins: feats.append(ins[0])))
    try:
        with paddle.no_grad():  # one pass: each BatchNorm is set before it runs, the head sees it
            layer(x)
    finally:
        for hook in hooks:
            hook.remove()
    if bns:
        done.append(f"{len(bns)} batch-norm layers recalibrated")
    if head is not None:
        _centre(head, feats[0])
        done.append("classifier centred")
    return ", ".join(d for d in done if d)


def _set_bn_stats(bn: Any, ins: tuple) -> None:
    """A BatchNorm's statistics from its input: per-channel means and ONE variance for the whole
    layer (the mean of its channels' variances). Per-channel variances would blow up channels whose
    signal the random filter cancelled, so noise would grow layer after layer (a 0.1 % input
    perturbation moved mobilenet_v1's output to cosine 0.87): a model no trained network
    resembles, and one that no int8 could match."""
    import paddle
    c, rank = ins[0].shape[1], len(ins[0].shape)
    per_channel = paddle.reshape(paddle.transpose(ins[0], [1, 0] + list(range(2, rank))), [c, -1])
    mean = paddle.mean(per_channel, axis=1)
    var = paddle.mean((per_channel - mean.unsqueeze(1)) ** 2)
    bn._mean.set_value(mean)
    bn._variance.set_value(paddle.full_like(bn._variance, float(var)))


def _lsuv(layer: Any, x: Any) -> str:
    """Scale each conv/linear weight (and bias) but the last so its output has unit std over `x`
    (one forward pass per layer: for the small nets without batch norm)."""
    import paddle
    from paddle import nn
    convs = [m for m in layer.sublayers() if isinstance(m, (nn.Conv2D, nn.Linear))][:-1]
    for m in convs:
        seen: list[float] = []

        def record(_m, _ins, out, seen=seen):
            seen.append(float(out.std()))

        hook = m.register_forward_post_hook(record)
        with paddle.no_grad():
            layer(x)
        hook.remove()
        if seen and seen[0] > 0:
            m.weight.set_value(m.weight / seen[0])
            if m.bias is not None:
                m.bias.set_value(m.bias / seen[0])
    return f"{len(convs)} layers scaled to unit variance" if convs else ""


def _centre(head: Any, feats: Any) -> None:
    """bias = -W . (mean input feature): logits say how an input differs from the others."""
    import paddle
    mean = paddle.mean(paddle.reshape(feats, [-1, feats.shape[-1]]), axis=0)
    bias = -paddle.matmul(mean.unsqueeze(0), head.weight).squeeze(0)
    head.bias.set_value(bias.astype(head.bias.dtype))
