"""The tensor ops a model file may call without --trust-code.

snnc runs a file's ops while it converts it: TorchScript methods run when torch.jit.load restores
the module and when the converter traces ``forward``; a .pt2 graph's ops on weights are folded by
running them. So a file may only use ops that compute on tensors in memory and touch nothing else
(files, processes, shared memory, the network, other libraries). ``aten::from_file`` and
``aten::save``, ``prim::Print``, custom and torchbind ops are therefore absent on purpose.

The list is wider than what snnc lowers (sigmoid, max_pool2d, lstm, ... are here) so that a model
with an unsupported layer reaches the lowering, which names the layer, instead of being called
untrusted. Names are aten op names without the overload, as TorchScript (``torch.relu``) and
torch.export (``torch.ops.aten.relu.default``) write them.
"""

# snnc's own ops (snn_compiler.nn): one LIF / CubaLIF step and the QCFS staircase, pure tensor computations.
SNNC_OPS = frozenset({"lif", "cubalif", "rcubalif", "qcfs"})

PURE_OPS = frozenset("""
abs abs_ neg neg_ add add_ sub sub_ rsub mul mul_ div div_ true_divide floor_divide remainder fmod
pow pow_ sqrt rsqrt exp exp2 log log2 log10 log1p expm1 sin cos tan sinh cosh asin acos atan atan2
tanh tanh_ sigmoid sigmoid_ relu relu_ relu6 hardtanh hardtanh_ leaky_relu leaky_relu_ elu elu_ selu
celu gelu silu silu_ mish hardswish hardsigmoid softplus threshold threshold_ prelu _prelu_kernel
log_sigmoid clamp clamp_ clamp_min clamp_max clip floor ceil round trunc frac sign reciprocal square
maximum minimum where lerp erf erfc
sum mean amax amin max min argmax argmin prod std var norm logsumexp cumsum softmax log_softmax
_softmax _log_softmax any all
eq ne lt le gt ge logical_not logical_and logical_or bitwise_not isnan isinf
view view_as reshape reshape_as _unsafe_view _reshape_alias flatten unflatten squeeze squeeze_
unsqueeze unsqueeze_ permute transpose t numpy_T contiguous clone detach detach_ alias expand
expand_as repeat narrow slice select index_select index gather chunk split split_with_sizes unbind
cat concat concatenate stack flip roll movedim size sym_size sym_numel sym_stride sym_storage_offset
numel dim stride
zeros zeros_like ones ones_like full full_like empty empty_like arange scalar_tensor new_zeros
new_ones new_full new_empty lift_fresh lift_fresh_copy to _to_copy type_as copy copy_ fill fill_
zero_ masked_fill masked_fill_
linear addmm mm matmul bmm baddbmm addmv mv dot conv1d conv2d conv3d convolution _convolution
_convolution_mode conv_transpose1d conv_transpose2d conv_transpose3d batch_norm
_native_batch_norm_legit_no_training _native_batch_norm_legit _native_batch_norm_legit_functional
native_batch_norm instance_norm layer_norm native_layer_norm group_norm native_group_norm dropout
dropout_ feature_dropout feature_dropout_ alpha_dropout alpha_dropout_ feature_alpha_dropout
feature_alpha_dropout_ native_dropout avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
adaptive_avg_pool2d _adaptive_avg_pool2d adaptive_avg_pool3d max_pool1d max_pool2d
max_pool2d_with_indices max_pool3d adaptive_max_pool1d adaptive_max_pool2d constant_pad_nd pad
upsample_nearest2d upsample_bilinear2d embedding pixel_shuffle lstm gru rnn_tanh rnn_relu lstm_cell
gru_cell _assert_tensor_metadata _assert_scalar sym_constrain_range sym_constrain_range_for_size
_assert_async _functional_assert_async
scaled_dot_product_attention _scaled_dot_product_attention_math _scaled_dot_product_flash_attention_for_cpu
_native_multi_head_attention _transformer_encoder_layer_fwd _safe_softmax einsum glu rms_norm
upsample_nearest1d upsample_bilinear2d _upsample_bilinear2d_aa _upsample_nearest_exact2d upsample_bicubic2d
pixel_unshuffle channel_shuffle native_channel_shuffle reflection_pad1d reflection_pad2d replication_pad1d
replication_pad2d max_pool1d_with_indices adaptive_max_pool1d unfold hardshrink softshrink logit tril triu
is_floating_point is_autocast_enabled is_grad_enabled addcmul addcdiv cumprod linalg_vector_norm
_unsafe_index scatter scatter_add index_put index_add
""".split())


def is_pure(name: str) -> bool:
    """``name`` (an aten op name without overload) is a pure tensor op: listed, or the in-place form
    ``op_`` of a listed op, which writes only the tensor it is called on (``hardswish_``, ``relu6_``)."""
    return name in PURE_OPS or (name.endswith("_") and not name.endswith("__") and name[:-1] in PURE_OPS)
