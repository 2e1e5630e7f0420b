"""Weight and threshold normalisation from calibration data (Diehl et al. 2015; Rueckauer et al. 2017).

Each neuron layer N gets an activation scale lambda_N from its ANN activations on the
calibration set: the maximum (``max``), a percentile of all activation values
(``percentile:P``, default 99.9, robust to outliers), or F times the maximum (``scale:F``);
``config.layer_scales`` sets lambda directly for named layers. The Input gets lambda_0 = max |x|.
Then for every weighted op k from source S into layer N:

    W'_k = W_k * lambda_S / lambda_N        b'_k = b_k / lambda_N

A layer whose scale is already set keeps it: a directly trained spiking layer (LIF) has its
trained threshold as lambda_N, and its spikes are worth ``spike_value`` (1), not its lambda, to
the layers it feeds (lambda_S above), so a trained SNN needs no calibration but for its input.
A QCFS layer has its trained theta as lambda_N (its spikes are worth theta, as a converted
layer's); its ``qcfs_theta`` is divided by lambda_N with the weights, so its ANN staircase reads
``clip(floor(a' L + 1/2), 0, L) / L`` on the normalised activation a' = a / theta.
A clipped ReLU (ReLU6: ``clip`` set) gets lambda_N = min(lambda, clip), unless --layer-scale
names it (a clip is the layer's maximum activation, so a larger lambda only lowers its rates),
and its clip is divided by lambda_N with the weights.

so the float SNN with threshold 1 fires at rate ~ relu(a_N) / lambda_N.

Without calibration data the default is ``model`` (data-free; a warning says so): every
neuron's pre-activation is estimated as a Gaussian N(m_i, s_i^2), propagated from inputs assumed
uniform on [0, 1] and replaced by the BatchNorm's training statistics where one was folded into
the layer (equations in :mod:`.datafree`), and lambda_N is the statistic calibration would take,
the 99.9th percentile of relu over all of the layer's neurons:

    mean_i Q((lambda_N - m_i) / s_i) = 0.001            (Q the Gaussian tail)

``bound`` is the older data-free rule (Diehl et al. 2015): lambda_N is the largest activation
the weights allow, max over neurons of sum_k sum_i max(0, W_k) * lambda_S + max(0, b), with
inputs in [0, 1]. It never clips, but it leaves deep layers nearly silent at usual T (on the
digits CNN: chance accuracy at T = 64, where ``model`` is within 0.5 pt of the ANN; see
benchmarks/README.md). Both data-free rules record each layer's expected rate from the estimate,
``mean_i E[clip(z_i, 0, lambda_N)] / lambda_N`` (a layer the estimate gives no positive mass
falls back to the bound). Every layer's expected rate (from the calibration data, or from the
estimate) then goes through :mod:`snn_compiler.activity`: a silent or saturated layer at
``config.timesteps`` is warned about by name.
``config.layer_factors`` multiplies chosen layers' lambda (ANNarchy's scale_factor); layers are
named or counted (neuron layers in topological order, from 0). Because the scale
belongs to the *target* layer, all branches entering a residual Add are rescaled into the
same units. A layer that only averages one source (a lowered average pool: depthwise, equal
positive weights, no bias) keeps lambda = lambda_S * sum(kernel), so it never saturates.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..config import parse_norm
from ..progress import bar
from ..ir import input_node, inputs_of, op_of, topo_order
from ..ir import ops as O
from ..sim import torch_ann
from ..sim.emulator import iter_ann
from ..ir.layers import incoming, neuron_layers, source_of
from . import datafree
from .calibration_stats import ChannelStats, LayerStats
from ..row_blocks import for_row_blocks
from ..activity import activity_warnings, checked_rates

CALIBRATION_BATCH = 64      # samples per ANN pass: the progress bar moves every few seconds on large nets
# A layer whose calibrated scale is below this fraction of the network's largest holds nothing but
# the float32 rounding of the ANN reading (2**-24 relative, summed over many terms): it is dead.
ROUNDING_NOISE = 2.0 ** -20


def _pooling_gain(graph, layer):
    """sum(kernel) if ``layer`` only averages one source's spikes, else None."""
    ops = incoming(graph, layer)
    if len(ops) != 1:
        return None
    op = op_of(graph, ops[0])
    if not isinstance(op, O.Conv2d) or op.bias is not None or op.weight.shape[1] != 1:
        return None
    if op.groups != op.weight.shape[0] or not np.all(op.weight == op.weight.flat[0]) or op.weight.flat[0] <= 0:
        return None
    if op.dilates_input:  # nearest upsampling: of its kernel's taps, only those on real inputs count
        (src,) = inputs_of(graph, ops[0])
        return float(op.apply(np.ones((1,) + tuple(graph.nodes[src]["shape"])), op.weight).max())
    return float(op.weight[0].sum())


def channel_spread(bits: int) -> float:
    """The largest ratio between two channels' scales in one layer (channel-wise normalization). A
    channel's weights are divided by its scale and a layer's integer weights share one threshold, so a
    channel scaled far below the others leaves them few integer levels: random AlexNet's int8 SNN lost
    every image that way while its float SNN kept 7 of 8. ``2**(bits - 3)`` (32 for 8 bits) keeps the
    strongest rows at least 4 levels; measured, it keeps the MobileNetV2 example's gain (97.6% at T=32,
    as with no limit; 77.4% with a limit of 4) and ends the collapse (ResNet-50 and AlexNet at 64 px
    with random weights: 88% and 56% agreement at T=64, as layer-wise, instead of 0%)."""
    return float(max(1, 2 ** (bits - 3)))


def _per_output(op, lam):
    """``lam`` (a number, or one per output channel) shaped to divide ``op``'s weight row by row."""
    return np.reshape(lam, (-1,) + (1,) * (op.weight.ndim - 1)) if np.ndim(lam) else lam


def _per_input(op, value):
    """What one unit of each input of ``op`` is worth: ``value`` (a number, or one per channel of the
    source layer) shaped to multiply ``op``'s weight column by column (a grouped conv reads its group's
    channels; a Dense reads a flattened map, each channel's H x W values in a row)."""
    if not np.ndim(value):
        return value
    v = np.asarray(value, np.float64)
    if isinstance(op, O.Dense):
        return np.repeat(v, op.weight.shape[1] // len(v))[None, :]
    o, cg = op.weight.shape[:2]
    idx = (np.arange(o)[:, None] // (o // op.groups)) * cg + np.arange(cg)[None, :]
    return v[idx][:, :, None, None]


def _rescaled(w, per_input, per_output):
    """``w * per_input / per_output`` (each broadcast over ``w``'s rows or one row for all) and whether
    every result is finite, in blocks of rows on the compile's threads (the same steps per element)."""
    w = np.asarray(w)
    out = np.empty(w.shape, np.result_type(w, per_input, per_output))
    finite = []

    def rows(a, lo, hi):
        return a if np.ndim(a) == 0 or np.shape(a)[0] == 1 else a[lo:hi]

    def block(lo, hi):
        with np.errstate(over="ignore"):  # an overflow is reported below, naming the layer
            np.divide(np.multiply(w[lo:hi], rows(per_input, lo, hi)), rows(per_output, lo, hi), out=out[lo:hi])
        finite.append(bool(np.isfinite(out[lo:hi]).all()))

    for_row_blocks(block, len(w), w.size)
    return out, all(finite)


DEFAULT_NORM = "percentile:99.9"


def _activation_scales(graph, layers, config, out, norm, factors, channel_wise=()):
    """lambda per layer from the calibration set, and the expected rate at lambda times its factor;
    for the layers in ``channel_wise`` lambda is a vector, one per channel."""
    if config.calibration is None:
        raise ValueError(f"--norm {norm} needs calibration data (--calibration DATA.npz); without it use --norm "
                         f"model or give a scale for every layer; missing: {', '.join(layers)}")
    norm = parse_norm(norm)
    sizes = {n: len(config.calibration) * int(np.prod(graph.nodes[n]["shape"])) for n in layers}
    low = norm[0] == "scale" and norm[1] < 1  # lambda below the largest value: the rate needs more than the top
    stats = {n: (ChannelStats(graph.nodes[n]["shape"][0], sizes[n] // graph.nodes[n]["shape"][0], norm,
                              keep_all=low or factors.get(n, 1.0) < 1) if n in channel_wise else
                 LayerStats(sizes[n], norm, keep_all=low or factors.get(n, 1.0) < 1)) for n in layers}
    progress = bar(len(config.calibration), "calibrate", enabled=config.progress)
    # the ANN reading through torch where it is installed (float32, the same scales to 1e-4; see
    # sim/torch_ann.py), else numpy's; $SNNC_CALIBRATION_ENGINE forces one
    read = torch_ann.iter_ann if torch_ann.calibration_engine() == "torch" else iter_ann
    for acts in read(graph, config.calibration, keep=layers, batch_size=CALIBRATION_BATCH):
        for n in layers:
            stats[n].add(acts[n] if n != out else np.maximum(acts[n], 0.0))  # the output's scale: its positive range
        progress.update(len(acts[out]))
    progress.close()
    scales = {}
    for n, st in stats.items():
        if not st.finite:
            raise ValueError(f"layer {n!r}: its activations on the calibration data are not finite")
        lam = st.statistic(norm)
        if np.ndim(lam):  # per channel: a dead channel takes its layer's scale (any positive one is exact)
            lam = np.where(lam > 0, lam, lam.max() if lam.max() > 0 else float(np.abs(st.top).max(initial=0.0)) or 1.0)
            lam = np.maximum(lam, lam.max() / channel_spread(config.bits))
        elif not lam > 0:  # a dead layer (or an all-negative output): any positive scale is exact
            lam = float(np.abs(st.top).max(initial=0.0)) or 1.0
        scales[n] = lam
    top = max((float(np.max(v)) for v in scales.values()), default=0.0)
    means = {}
    for n, st in stats.items():
        # only float32 rounding (a max-pool tree's u - v with u == v): a dead layer (or channel), as above,
        # not one scaled up 10**7
        noise = scales[n] < ROUNDING_NOISE * top
        if np.ndim(noise):
            scales[n] = np.where(noise, scales[n].max() if not noise.all() else 1.0, scales[n])
        elif noise:
            scales[n] = 1.0
        final = scales[n] * factors.get(n, 1.0)   # the expected rate: mean(min(v, lam)) / lam
        means[n] = st.rate(final)
    return scales, means


def _by_layer(table, layers, flag) -> dict:
    """``{layer name: value}`` from keys that are layer names or indices (ints or digit strings)."""
    out = {}
    for key, v in dict(table).items():
        name = key
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and key not in layers):
            if not 0 <= int(key) < len(layers):
                raise ValueError(f"{flag} {key}: there are {len(layers)} neuron layers (0..{len(layers) - 1})")
            name = layers[int(key)]
        if name not in layers:
            raise ValueError(f"{flag} names no neuron layer: {key} (layers: {', '.join(layers)})")
        out[name] = float(v)
    return out


def _model_scale(graph, layer, value) -> float:
    """The largest activation ``layer`` can reach from its weights, its sources at their scales."""
    top = 0.0
    for k in incoming(graph, layer):
        op = op_of(graph, k)
        w = np.maximum(op.weight.reshape(len(op.weight), -1), 0.0).sum(axis=1) * value(source_of(graph, k))
        b = np.zeros(len(w)) if op.bias is None else np.maximum(op.bias, 0.0)
        top = top + w + b
    return float(np.max(top, initial=0.0)) or 1.0


MODEL_PERCENTILE = 99.9   # the data-free estimate's statistic: the calibrated default's percentile
DATA_FREE = ("model", "bound")


def normalize(graph, config) -> bool:
    state = graph.graph.setdefault("snnc", {})
    if state.get("normalized"):
        return False
    order = topo_order(graph)
    inp = input_node(graph)
    layers = neuron_layers(graph, order)
    out = next(n for n in layers if O.is_readout(op_of(graph, n)))
    pools = {n: g for n in layers if (g := _pooling_gain(graph, n)) is not None}
    norm = config.norm or (DEFAULT_NORM if config.calibration is not None else "model")
    by_model = parse_norm(norm)[0] in DATA_FREE
    layer_scales = _by_layer(config.layer_scales, layers, "--layer-scale")
    factors = _by_layer(config.layer_factors, layers, "--layer-factor")
    preset = {n: op_of(graph, n).scale for n in layers if op_of(graph, n).scale is not None}
    need = [n for n in layers if n not in layer_scales and n not in pools and n not in preset]
    pre = datafree.preactivations(graph) if by_model and need else None  # in the trained units, before any scaling
    if config.channel_wise and by_model:
        raise ValueError(f"--channel-wise takes each channel's scale from calibration data; --norm {norm} has none")
    channel_wise = [n for n in need if config.channel_wise and O.is_hidden_neuron(op_of(graph, n))
                    and op_of(graph, n).levels is None and op_of(graph, n).spike_value is None]
    if need and not by_model:
        scales, rates = _activation_scales(graph, need, config, out, norm, factors, channel_wise)
    elif pre is not None and norm == "model":
        scales = {n: v for n in need if (v := datafree.positive_quantile(*pre[n], MODEL_PERCENTILE)) > 0}
        rates = {}  # set at the end; a layer estimated silent (no positive mass) falls back to the bound
    else:
        scales, rates = {}, {}
    scales.update(preset)
    scales.update(layer_scales)

    in_op = op_of(graph, inp)
    if in_op.scale is None and config.calibration is None:
        if not by_model:
            raise ValueError("normalization needs calibration data (--calibration DATA.npz) to scale the input")
        how = ("estimating activations from inputs assumed uniform in [0, 1] and the BatchNorm statistics"
               if norm == "model" else "from the weights' worst case (Diehl et al. 2015), inputs assumed in [0, 1]")
        warnings.warn(f"no calibration data: normalizing data-free (--norm {norm}), {how}; calibration data "
                      "(--calibration) can give higher accuracy", UserWarning, stacklevel=2)
        in_op.scale, in_op.bits = 1.0, config.input_bits
    if in_op.scale is None:
        in_op.scale = float(np.abs(config.calibration).max()) or 1.0
        if not np.isfinite(in_op.scale):
            raise ValueError("the calibration data are not finite (NaN or inf in x)")
        in_op.signed = bool((np.asarray(config.calibration) < 0).any())
        in_op.bits = config.input_bits
        if in_op.signed and in_op.bits < 2:
            raise ValueError(f"--input-bits {in_op.bits} cannot hold signed input (the calibration data has "
                             "negative values): use --input-bits 2 or more")
    lam = {inp: in_op.scale}
    for n in layers:
        lam[n] = scales[n] if n in scales else None

    def value(src):  # what one unit the source sends is worth, in the trained network's units
        sop = op_of(graph, src)
        return sop.spike_value if isinstance(sop, O.Neuron) and sop.spike_value is not None else lam[src]

    for n in layers:  # topological: a pool's (and the model norm's) sources are known before the layer
        if lam[n] is None and n in pools:
            lam[n] = value(source_of(graph, incoming(graph, n)[0])) * pools[n]
        elif lam[n] is None:
            lam[n] = _model_scale(graph, n, value)
        lam[n] = lam[n] * factors.get(n, 1.0)
        layer = op_of(graph, n)
        if layer.clip is not None and n not in layer_scales:  # a clipped ReLU never exceeds its clip
            lam[n] = np.minimum(lam[n], layer.clip) if np.ndim(lam[n]) else min(lam[n], layer.clip)
        if not (np.all(np.isfinite(lam[n])) and np.all(np.asarray(lam[n]) > 0)):
            raise ValueError(f"layer {n!r}: activation scale {lam[n]!r} is not a finite positive number")
        layer.scale = float(np.max(lam[n]))  # (per channel: the largest; the weights hold each channel's)
        if layer.levels is not None:  # a QCFS staircase reads its input in the same units as the weights
            layer.qcfs_theta = layer.qcfs_theta / lam[n]
        if layer.clip is not None:  # so does a clipped ReLU's ceiling
            layer.clip = layer.clip / lam[n]
        for k in incoming(graph, n):
            op = op_of(graph, k)
            op.weight, finite = _rescaled(op.weight, _per_input(op, value(source_of(graph, k))), _per_output(op, lam[n]))
            if op.bias is not None:
                with np.errstate(over="ignore"):
                    op.bias = op.bias / lam[n]
            if not (finite and (op.bias is None or np.all(np.isfinite(op.bias)))):
                raise ValueError(f"layer {n!r}: activation scale {np.max(lam[n]):.3g} (source {source_of(graph, k)!r}: "
                                 f"{np.max(lam[source_of(graph, k)]):.3g}) makes the weights of {k!r} overflow; check "
                                 "--norm / --layer-scale")
    if pre is not None:  # the data-free estimate's rates at the scales chosen (the bound's, factors included)
        rates = {n: datafree.expected_rate(*pre[n], lam[n]) for n in need}
    source = "estimated without data" if by_model else "expected from the calibration data"
    for line in activity_warnings(checked_rates(graph, rates), config.timesteps, source):
        warnings.warn(line, UserWarning, stacklevel=2)
    state["normalized"] = True
    state["norm"] = norm
    state["channel_wise"] = bool(channel_wise)
    state["expected_rates"] = rates
    return True
