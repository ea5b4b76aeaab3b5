"""Shared building blocks. Axis legend: b batch, c channels (feature maps), f frequency bins, t frames."""
from ftlib.layers.attention import MultichannelMultiheadAttention, fused_attention, heads_for, residual_links
from ftlib.layers.conv import FrameDecoder, FrameEncoder
from ftlib.layers.multichannel import ChannelMix, MultichannelLayerNorm, MultichannelLinear
from ftlib.layers.recurrent import FrameLSTMBlock
from ftlib.layers.rotary import RotaryEmbedding
from ftlib.layers.stereo import mid_side_magnitudes
from ftlib.layers.transformer import FeedForward, FrameTransformerBlock, RMSNorm, SquaredReLU, TimestepEmbedding

__all__ = [
    "ChannelMix", "FeedForward", "FrameDecoder", "FrameEncoder", "FrameLSTMBlock", "FrameTransformerBlock",
    "MultichannelLayerNorm", "MultichannelLinear", "MultichannelMultiheadAttention", "RMSNorm", "RotaryEmbedding",
    "SquaredReLU", "TimestepEmbedding", "fused_attention", "heads_for", "mid_side_magnitudes", "residual_links",
]
