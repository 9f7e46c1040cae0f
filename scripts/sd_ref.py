"""Independent PyTorch reference of the SD-1.x latent diffusion family, used to make the C engine's fixtures.

Written from reading diffusers v0.19.0 (UNet2DConditionModel, AutoencoderKL, DDIMScheduler,
DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline) and transformers' CLIPTextModel / CLIPTokenizer;
the latent consistency parts from diffusers v0.27.2 (LCMScheduler, TimestepEmbedding's cond_proj,
LatentConsistencyModelPipeline / LatentConsistencyModelImg2ImgPipeline and their get_guidance_scale_embedding).
The module trees use the same attribute names, so state_dict() keys are the diffusers/transformers names.
Plain torch (1.13) + numpy only; no diffusers/transformers needed.

Contents: CLIP BPE tokenizer (+ a tiny BPE learner for fixture vocabularies), CLIPTextModel, UNet, AutoencoderKL,
DDIM and DPM-Solver++(2M) with 0.19 semantics, LCM with 0.27's, img2img/txt2img (and the LCM sampler, whose
injected noise is the engine's Philox stream), safetensors read/write, diffusers <-> original (CompVis/LDM)
single-file key mapping, diffusers folder writer.
"""
import json
import math
import os
import re
import struct

import sys

try:
    import torch
except ImportError:  # the python3 on PATH may be a pyenv without Debian's python3-torch
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise
import numpy as np
import torch.nn as nn
import torch.nn.functional as F

try:
    import regex as _regex
except ImportError:  # ASCII-equivalent fallback: [^\W\d_] is "letter" for the re module
    _regex = None

# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    """The byte -> printable unicode char table of GPT-2/CLIP: printable latin-1 bytes map to themselves, the
    other 68 bytes to 256, 257, ... in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


if _regex is not None:
    _PAT = _regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                          r"""[^\s\p{L}\p{N}]+""", _regex.IGNORECASE)
else:
    _PAT = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"""
                      r"""[^\s\w]+|_+""", re.IGNORECASE)


def clean_text(text):
    """Lowercase and collapse whitespace (what CLIPTokenizer does for ASCII text, with or without ftfy)."""
    return re.sub(r"\s+", " ", text).strip().lower()


def pre_tokenize(text):
    """Words of the cleaned text, each as a string of byte symbols."""
    b2u = bytes_to_unicode()
    return ["".join(b2u[b] for b in w.encode("utf-8")) for w in _PAT.findall(clean_text(text))]


def _merge_pair(word, a, b):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_bpe(texts, n_merges):
    """A plain BPE learner over the pre-tokenized words of texts (end-of-word marked with </w>): repeatedly merge
    the most frequent adjacent pair (ties: the smallest pair), skipping merges whose result already exists."""
    words = {}
    for t in texts:
        for w in pre_tokenize(t):
            key = tuple(w[:-1]) + (w[-1] + "</w>",)
            words[key] = words.get(key, 0) + 1
    words = {k: v for k, v in words.items()}
    merges, made = [], set()
    while len(merges) < n_merges:
        counts = {}
        for w, n in words.items():
            for p in zip(w[:-1], w[1:]):
                counts[p] = counts.get(p, 0) + n
        cands = sorted((-n, p) for p, n in counts.items() if p[0] + p[1] not in made)
        if not cands:
            break
        a, b = cands[0][1]
        merges.append((a, b))
        made.add(a + b)
        words = {tuple(_merge_pair(list(w), a, b)): n for w, n in words.items()}
    return merges


def build_vocab(merges):
    """CLIP's vocab order: 256 byte symbols, the same with </w>, one entry per merge, then BOS, EOS."""
    syms = list(bytes_to_unicode().values())
    vocab = syms + [s + "</w>" for s in syms] + [a + b for a, b in merges] + [BOS, EOS]
    assert len(set(vocab)) == len(vocab), "duplicate vocab entry"
    return {s: i for i, s in enumerate(vocab)}


class CLIPTokenizer:
    def __init__(self, vocab, merges, max_length=77):
        self.vocab = vocab
        self.inv = {i: s for s, i in vocab.items()}
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.max_length = max_length
        self.bos, self.eos = vocab[BOS], vocab[EOS]
        self.pad = self.eos   # SD 1.x pads with <|endoftext|>

    @classmethod
    def from_files(cls, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().strip().split("\n")[1:]
        return cls(vocab, [tuple(l.split()) for l in lines])

    def bpe(self, word):
        """word (byte symbols) -> BPE pieces, the last one ending in </w>; lowest-rank pair first, all its
        non-overlapping occurrences left to right, until no ranked pair is left."""
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            best, best_rank = None, None
            for p in zip(parts[:-1], parts[1:]):
                r = self.ranks.get(p)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = p, r
            if best is None:
                break
            parts = _merge_pair(parts, *best)
        return parts

    def tokens(self, text):
        out = []
        for w in pre_tokenize(text):
            out.extend(self.vocab[p] for p in self.bpe(w))
        return out

    def __call__(self, text):
        """BOS + tokens (truncated to max_length-2) + EOS, padded with pad to max_length."""
        ids = [self.bos] + self.tokens(text)[: self.max_length - 2] + [self.eos]
        return ids + [self.pad] * (self.max_length - len(ids))

    def decode(self, ids):
        """Token ids -> text (specials dropped, </w> as a space)."""
        u2b = {u: b for b, u in bytes_to_unicode().items()}
        return _decode_syms("".join(self.inv[i] for i in ids if i not in (self.bos, self.eos)).replace("</w>", " "),
                            u2b)


def _decode_syms(s, u2b):
    out = bytearray()
    for c in s:
        out += b" " if c == " " else bytes([u2b[c]])
    return out.decode("utf-8", "replace").strip()


def write_tokenizer(dirpath, vocab, merges):
    os.makedirs(dirpath, exist_ok=True)
    write_json(os.path.join(dirpath, "vocab.json"), vocab)
    write_text(os.path.join(dirpath, "merges.txt"),
               "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(os.path.join(dirpath, "special_tokens_map.json"), {
        "bos_token": {"content": BOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": EOS,
        "unk_token": {"content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    })
    write_json(os.path.join(dirpath, "tokenizer_config.json"), {
        "add_prefix_space": False, "bos_token": BOS, "do_lower_case": True, "eos_token": EOS,
        "errors": "replace", "model_max_length": 77, "pad_token": EOS, "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    })


# ---------------------------------------------------------------------------------------------------------
# CLIP text encoder (transformers CLIPTextModel names)
# ---------------------------------------------------------------------------------------------------------

class CLIPAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, mask):
        B, T, C = x.shape
        hd = C // self.heads
        q = (self.q_proj(x) * hd ** -0.5).view(B, T, self.heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.heads, hd).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C))


class CLIPMLP(nn.Module):
    def __init__(self, dim, inner, act):
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)

    def forward(self, x):
        h = self.fc1(x)
        if self.act == "quick_gelu":
            h = h * torch.sigmoid(1.702 * h)
        else:
            h = F.gelu(h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.self_attn = CLIPAttention(d, cfg["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, cfg["intermediate_size"], cfg["hidden_act"])
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1]))[None]


class CLIPEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = CLIPEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])


class CLIPTextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.text_model = CLIPTextTransformer(cfg)

    def forward(self, ids, trace=None):
        """ids [B,T] int64 -> last_hidden_state [B,T,C] (after final_layer_norm). Causal mask, no padding mask."""
        tm = self.text_model
        x = tm.embeddings(ids)
        T = ids.shape[1]
        mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
        if trace is not None:
            trace["embed"] = x
        for i, layer in enumerate(tm.encoder.layers):
            x = layer(x, mask)
            if trace is not None:
                trace[f"layer{i}"] = x
        return tm.final_layer_norm(x)


def clip_config(hidden, layers, heads, inter, vocab_size):
    # bos/eos/pad ids are SD 1.5's misleading values (0/2/1); the tokenizer files are what counts.
    return {"_name_or_path": "genie-tiny", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
            "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu",
            "hidden_size": hidden, "initializer_factor": 1.0, "initializer_range": 0.02,
            "intermediate_size": inter, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
            "model_type": "clip_text_model", "num_attention_heads": heads, "num_hidden_layers": layers,
            "pad_token_id": 1, "projection_dim": hidden, "torch_dtype": "float32",
            "transformers_version": "4.31.0", "vocab_size": vocab_size}


# ---------------------------------------------------------------------------------------------------------
# Building blocks shared by UNet and VAE (diffusers names)
# ---------------------------------------------------------------------------------------------------------

class ResnetBlock2D(nn.Module):
    """GN -> SiLU -> conv3x3 (+ time_emb_proj(SiLU(temb)) per channel) -> GN -> SiLU -> conv3x3, plus the input
    (through a 1x1 conv_shortcut when the channel count changes). output_scale_factor 1."""

    def __init__(self, cin, cout, temb_ch, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, cout) if temb_ch else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    """conv3x3 stride 2; padding 1 (UNet), or padding 0 after an explicit right/bottom zero pad (VAE)."""

    def __init__(self, ch, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def attention(q, k, v, heads):
    """q [B,Tq,heads*d], k/v [B,Tk,heads*d] -> softmax(q k^T / sqrt(d)) v, [B,Tq,heads*d]."""
    B, Tq, C = q.shape
    d = C // heads
    q = q.view(B, Tq, heads, d).transpose(1, 2)
    k = k.view(B, -1, heads, d).transpose(1, 2)
    v = v.view(B, -1, heads, d).transpose(1, 2)
    w = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5, dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, Tq, C)


class Attention(nn.Module):
    """diffusers Attention as used by BasicTransformerBlock: to_q/to_k/to_v without bias, to_out.0 with bias."""

    def __init__(self, dim, heads, head_dim, ctx_dim=None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(ctx_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(ctx_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out[0](attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)   # exact (erf) GELU


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, ctx_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, heads, head_dim, ctx_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    """GN(eps 1e-6) -> proj_in (1x1 conv, or Linear after flattening when linear) -> blocks -> proj_out -> +x."""

    def __init__(self, heads, head_dim, ch, ctx_dim, groups, linear, n_layers=1):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        inner = heads * head_dim
        self.proj_in = nn.Linear(ch, inner) if linear else nn.Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, ctx_dim) for _ in range(n_layers)])
        self.proj_out = nn.Linear(inner, ch) if linear else nn.Conv2d(inner, ch, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.norm(x)
        if self.linear:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(B, H * W, C))
        else:
            h = self.proj_in(h)
            h = h.permute(0, 2, 3, 1).reshape(B, H * W, h.shape[1])
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        if self.linear:
            h = self.proj_out(h).reshape(B, H, W, C).permute(0, 3, 1, 2)
        else:
            h = self.proj_out(h.reshape(B, H, W, -1).permute(0, 3, 1, 2))
        return h + x


# ---------------------------------------------------------------------------------------------------------
# UNet2DConditionModel
# ---------------------------------------------------------------------------------------------------------

def timestep_embedding(t, dim, flip_sin_to_cos=True, shift=0.0):
    """diffusers get_timestep_embedding in float32: freq_i = exp(-ln(10000) * i / (half - shift)),
    emb = [sin(t f), cos(t f)], swapped to [cos, sin] when flip_sin_to_cos; zero-padded if dim is odd."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """linear_2(silu(linear_1(x + cond_proj(condition)))); cond_proj (no bias) only with time_cond_proj_dim."""

    def __init__(self, cin, dim, cond_dim=None):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cin, dim), nn.Linear(dim, dim)
        if cond_dim:
            self.cond_proj = nn.Linear(cond_dim, cin, bias=False)

    def forward(self, x, condition=None):
        if condition is not None:
            x = x + self.cond_proj(condition)
        return self.linear_2(F.silu(self.linear_1(x)))


def guidance_scale_embedding(w, dim):
    """LatentConsistencyModelPipeline.get_guidance_scale_embedding (0.27) for a 1-D float32 w (the pipeline passes
    guidance_scale - 1): w*1000 times exp(arange(half) * -(log(10000) / (half - 1))), [sin, cos], zero-padded."""
    w = w * 1000.0
    half = dim // 2
    e = torch.log(torch.tensor(10000.0)) / (half - 1)
    e = torch.exp(torch.arange(half, dtype=torch.float32) * -e)
    e = w.to(torch.float32)[:, None] * e[None, :]
    e = torch.cat([torch.sin(e), torch.cos(e)], dim=1)
    if dim % 2 == 1:
        e = F.pad(e, (0, 1))
    return e


class UNetBlock(nn.Module):
    """One down or up block: resnets (+ attentions when cross-attention) + an optional down/upsampler."""

    def __init__(self, resnets, attentions, downsamplers=None, upsamplers=None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        if downsamplers is not None:
            self.downsamplers = nn.ModuleList(downsamplers)
        if upsamplers is not None:
            self.upsamplers = nn.ModuleList(upsamplers)


def _per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        boc = cfg["block_out_channels"]
        n = len(boc)
        L = cfg["layers_per_block"]
        G, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        ctx = cfg["cross_attention_dim"]
        lin = cfg["use_linear_projection"]
        heads = _per_block(cfg["attention_head_dim"], n)   # SD 1.x naming: these are head counts
        tl = cfg.get("transformer_layers_per_block", 1)
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb, cfg.get("time_cond_proj_dim"))

        def xf(h, ch):
            return Transformer2DModel(h, ch // h, ch, ctx, G, lin, tl)

        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, cout = cout, boc[i]
            final = i == n - 1
            res = [ResnetBlock2D(cin if j == 0 else cout, cout, temb, G, eps) for j in range(L)]
            att = [xf(heads[i], cout) for _ in range(L)] if kind == "CrossAttnDownBlock2D" else None
            self.down_blocks.append(UNetBlock(res, att, None if final else [Downsample2D(cout, 1)]))

        self.mid_block = UNetBlock([ResnetBlock2D(boc[-1], boc[-1], temb, G, eps) for _ in range(2)],
                                   [xf(heads[-1], boc[-1])])

        self.up_blocks = nn.ModuleList()
        rb, rh = list(reversed(boc)), list(reversed(heads))
        cout = rb[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, cout = cout, rb[i]
            cin = rb[min(i + 1, n - 1)]
            final = i == n - 1
            res = []
            for j in range(L + 1):
                skip = cin if j == L else cout
                res.append(ResnetBlock2D((prev if j == 0 else cout) + skip, cout, temb, G, eps))
            att = [xf(rh[i], cout) for _ in range(L + 1)] if kind == "CrossAttnUpBlock2D" else None
            self.up_blocks.append(UNetBlock(res, att, upsamplers=None if final else [Upsample2D(cout)]))

        self.conv_norm_out = nn.GroupNorm(G, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, t, ctx, trace=None, timestep_cond=None):
        """x [B,4,h,w], t scalar or [B] timesteps, ctx [B,77,D], timestep_cond [B,time_cond_proj_dim] or None ->
        epsilon [B,4,h,w]."""
        cfg = self.cfg
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        emb = self.time_embedding(timestep_embedding(t, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"],
                                                     cfg["freq_shift"]), timestep_cond)
        h = self.conv_in(x)
        skips = [h]
        if trace is not None:
            trace["temb"], trace["conv_in"] = emb, h
        for i, blk in enumerate(self.down_blocks):
            for j, r in enumerate(blk.resnets):
                h = r(h, emb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[j](h, ctx)
                skips.append(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
                skips.append(h)
            if trace is not None:
                trace[f"down{i}"] = h
        m = self.mid_block
        h = m.resnets[1](m.attentions[0](m.resnets[0](h, emb), ctx), emb)
        if trace is not None:
            trace["mid"] = h
        for i, blk in enumerate(self.up_blocks):
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), emb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[j](h, ctx)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
            if trace is not None:
                trace[f"up{i}"] = h
        assert not skips
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def unet_config(boc, down, up, layers, heads, ctx, linear, groups=32, sample_size=64, time_cond_proj_dim=None):
    extra = {"time_cond_proj_dim": time_cond_proj_dim} if time_cond_proj_dim else {}
    return extra | {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0", "act_fn": "silu",
            "attention_head_dim": heads, "block_out_channels": list(boc), "center_input_sample": False,
            "cross_attention_dim": ctx, "down_block_types": list(down), "downsample_padding": 1,
            "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": layers,
            "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": groups, "out_channels": 4,
            "sample_size": sample_size, "up_block_types": list(up), "use_linear_projection": linear,
            "upcast_attention": False, "only_cross_attention": False, "dual_cross_attention": False,
            "class_embed_type": None, "num_class_embeds": None, "resnet_time_scale_shift": "default",
            "transformer_layers_per_block": 1}


# ---------------------------------------------------------------------------------------------------------
# AutoencoderKL
# ---------------------------------------------------------------------------------------------------------

class VAEAttention(nn.Module):
    """Single-head self-attention over the H*W positions with its own GroupNorm and a residual; Linear q/k/v/out
    (all biased), scale 1/sqrt(C)."""

    def __init__(self, ch, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).reshape(B, C, H * W).transpose(1, 2)
        h = self.to_out[0](attention(self.to_q(h), self.to_k(h), self.to_v(h), 1))
        return h.transpose(1, 2).reshape(B, C, H, W) + x


class VAEMid(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, 0, groups, 1e-6) for _ in range(2)])
        self.attentions = nn.ModuleList([VAEAttention(ch, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc, L, G = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i in range(len(boc)):
            cin, cout = cout, boc[i]
            res = [ResnetBlock2D(cin if j == 0 else cout, cout, 0, G, 1e-6) for j in range(L)]
            ds = None if i == len(boc) - 1 else [Downsample2D(cout, 0)]
            self.down_blocks.append(UNetBlock(res, None, ds))
        self.mid_block = VAEMid(boc[-1], G)
        self.conv_norm_out = nn.GroupNorm(G, boc[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x, trace=None):
        h = self.conv_in(x)
        for i, blk in enumerate(self.down_blocks):
            for r in blk.resnets:
                h = r(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
            if trace is not None:
                trace[f"enc.down{i}"] = h
        h = self.mid_block(h)
        if trace is not None:
            trace["enc.mid"] = h
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc, L, G = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        rb = list(reversed(boc))
        self.conv_in = nn.Conv2d(cfg["latent_channels"], boc[-1], 3, padding=1)
        self.mid_block = VAEMid(boc[-1], G)
        self.up_blocks = nn.ModuleList()
        cout = rb[0]
        for i in range(len(boc)):
            cin, cout = cout, rb[i]
            res = [ResnetBlock2D(cin if j == 0 else cout, cout, 0, G, 1e-6) for j in range(L + 1)]
            us = None if i == len(boc) - 1 else [Upsample2D(cout)]
            self.up_blocks.append(UNetBlock(res, None, upsamplers=us))
        self.conv_norm_out = nn.GroupNorm(G, boc[0], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z, trace=None):
        h = self.mid_block(self.conv_in(z))
        if trace is not None:
            trace["dec.mid"] = h
        for i, blk in enumerate(self.up_blocks):
            for r in blk.resnets:
                h = r(h)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
            if trace is not None:
                trace[f"dec.up{i}"] = h
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        lc = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x, trace=None):
        """x [B,3,H,W] in [-1,1] -> (mean, logvar clamped to [-30,20]), each [B,lc,H/f,W/f]."""
        mean, logvar = self.quant_conv(self.encoder(x, trace)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def sample(mean, logvar, noise):
        return mean + torch.exp(0.5 * logvar) * noise

    def decode(self, z, trace=None):
        return self.decoder(self.post_quant_conv(z), trace)


def vae_config(boc, layers, groups=32, sample_size=512, scaling=0.18215):
    n = len(boc)
    return {"_class_name": "AutoencoderKL", "_diffusers_version": "0.19.0", "act_fn": "silu",
            "block_out_channels": list(boc), "down_block_types": ["DownEncoderBlock2D"] * n,
            "in_channels": 3, "latent_channels": 4, "layers_per_block": layers, "norm_num_groups": groups,
            "out_channels": 3, "sample_size": sample_size, "scaling_factor": scaling,
            "up_block_types": ["UpDecoderBlock2D"] * n}


VAE_DEPRECATED_ATTN = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def vae_to_deprecated_names(sd):
    """0.19 VAE mid-attention names -> the pre-0.14 names real SD 1.5 hub files still carry."""
    out = {}
    for k, v in sd.items():
        for new, old in VAE_DEPRECATED_ATTN.items():
            if ".attentions.0." + new + "." in k:
                k = k.replace(".attentions.0." + new + ".", ".attentions.0." + old + ".")
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------------------
# Schedulers (diffusers 0.19 semantics; all schedule arithmetic in float32 torch, as diffusers does)
# ---------------------------------------------------------------------------------------------------------

SD_SCHEDULER_CONFIG = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.19.0", "beta_end": 0.012,
                       "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                       "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
                       "steps_offset": 1, "trained_betas": None}


def alphas_cumprod(cfg=SD_SCHEDULER_CONFIG):
    n = cfg["num_train_timesteps"]
    if cfg["beta_schedule"] == "scaled_linear":
        betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    else:
        betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], n, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0), betas


def add_noise(ac, x0, noise, t):
    """sqrt(ac[t]) x0 + sqrt(1 - ac[t]) noise (DDPM add_noise; DDIM and DPM 0.19 both use it)."""
    a = ac[t]
    return a ** 0.5 * x0 + (1 - a) ** 0.5 * noise


def diffusers_timesteps(kind, n, spacing, cfg=SD_SCHEDULER_CONFIG):
    """The timesteps diffusers 0.19's DDIMScheduler ("ddim") and DPMSolverMultistepScheduler ("dpm") set, by the
    same numpy float64 arithmetic (arange/linspace/round, whose rounding the engine must reproduce), as int64. The schedule is returned as diffusers makes
    it, even where it cannot be run: DDIM leading with n = T and steps_offset 1 ends at T; trailing can overshoot
    to one more timestep, -1 (np.arange's length is a rounded ceil)."""
    T = cfg["num_train_timesteps"]
    if kind == "ddim":
        if n > T:
            raise ValueError(f"{n} steps > num_train_timesteps {T}")
        if spacing == "linspace":
            timesteps = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
        elif spacing == "leading":
            step_ratio = T // n
            timesteps = (np.arange(0, n) * step_ratio).round()[::-1].copy().astype(np.int64)
            timesteps += cfg.get("steps_offset", 0)
        elif spacing == "trailing":
            step_ratio = T / n
            timesteps = np.round(np.arange(T, 0, -step_ratio)).astype(np.int64)
            timesteps -= 1
        else:
            raise ValueError(spacing)
        return timesteps
    _, _, lambda_t = dpm_tables(cfg)
    clipped_idx = torch.searchsorted(torch.flip(lambda_t, [0]), cfg.get("lambda_min_clipped", -float("inf")))
    last_timestep = ((T - clipped_idx).numpy()).item()
    if spacing == "linspace":
        timesteps = np.linspace(0, last_timestep - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
    elif spacing == "leading":
        step_ratio = last_timestep // (n + 1)
        timesteps = (np.arange(0, n + 1) * step_ratio).round()[::-1][:-1].copy().astype(np.int64)
        timesteps += cfg.get("steps_offset", 0)
    elif spacing == "trailing":
        step_ratio = T / n
        timesteps = np.arange(last_timestep, 0, -step_ratio).round().copy().astype(np.int64)
        timesteps -= 1
    else:
        raise ValueError(spacing)
    # a schedule as long as the training one can repeat a timestep: each is kept once, in order
    _, unique_indices = np.unique(timesteps, return_index=True)
    return timesteps[np.sort(unique_indices)]


def dpm_tables(cfg=SD_SCHEDULER_CONFIG):
    """DPMSolverMultistepScheduler's alpha_t, sigma_t, lambda_t (float32)."""
    ac, _ = alphas_cumprod(cfg)
    alpha_t, sigma_t = torch.sqrt(ac), torch.sqrt(1 - ac)
    return alpha_t, sigma_t, torch.log(alpha_t) - torch.log(sigma_t)


class DDIM:
    """DDIMScheduler, eta 0, epsilon prediction, 'leading' spacing + steps_offset, clip_sample False."""
    order = 1

    def __init__(self, cfg=SD_SCHEDULER_CONFIG):
        self.cfg = cfg
        self.ac, _ = alphas_cumprod(cfg)
        self.final_ac = torch.tensor(1.0) if cfg.get("set_alpha_to_one", True) else self.ac[0]
        assert not cfg.get("clip_sample", True), "SD configs have clip_sample false"

    def set_timesteps(self, n):
        self.n = n
        self.timesteps = torch.from_numpy(diffusers_timesteps("ddim", n, "leading", self.cfg))

    def step(self, eps, t, x):
        t = int(t)
        prev = t - self.cfg["num_train_timesteps"] // self.n
        a_t = self.ac[t]
        a_p = self.ac[prev] if prev >= 0 else self.final_ac
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        return a_p ** 0.5 * x0 + (1 - a_p) ** 0.5 * eps


class DPMSolverPP:
    """DPMSolverMultistepScheduler(algorithm_type='dpmsolver++', solver_order=2, solver_type='midpoint',
    lower_order_final=True, 'linspace' spacing) as in 0.19: the final step goes to timestep 0 (alpha_t[0],
    sigma_t[0]), and lower_order_final looks at the full schedule length."""
    order = 1

    def __init__(self, cfg=SD_SCHEDULER_CONFIG):
        self.cfg = cfg
        self.ac, _ = alphas_cumprod(cfg)
        self.alpha_t, self.sigma_t, self.lambda_t = dpm_tables(cfg)

    def set_timesteps(self, n):
        self.timesteps = torch.from_numpy(diffusers_timesteps("dpm", n, "linspace", self.cfg))
        self.outputs = [None, None]
        self.lower_order_nums = 0

    def step(self, eps, t, x):
        ts = [int(v) for v in self.timesteps]
        t = int(t)
        i = ts.index(t)
        n = len(ts)
        prev = 0 if i == n - 1 else ts[i + 1]
        lof = i == n - 1 and n < 15
        m0 = (x - self.sigma_t[t] * eps) / self.alpha_t[t]   # data prediction x0
        self.outputs = [self.outputs[1], m0]
        lt, ls = self.lambda_t[prev], self.lambda_t[t]
        h = lt - ls
        a_p, s_p, s_t = self.alpha_t[prev], self.sigma_t[prev], self.sigma_t[t]
        if self.lower_order_nums < 1 or lof:
            out = (s_p / s_t) * x - (a_p * (torch.exp(-h) - 1.0)) * m0
        else:
            s1 = ts[i - 1]
            m1 = self.outputs[0]
            r0 = (ls - self.lambda_t[s1]) / h
            d1 = (1.0 / r0) * (m0 - m1)
            out = (s_p / s_t) * x - (a_p * (torch.exp(-h) - 1.0)) * m0 - 0.5 * (a_p * (torch.exp(-h) - 1.0)) * d1
        if self.lower_order_nums < 2:
            self.lower_order_nums += 1
        return out


LCM_SCHEDULER_CONFIG = {"_class_name": "LCMScheduler", "_diffusers_version": "0.27.2", "beta_end": 0.012,
                        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                        "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000,
                        "original_inference_steps": 50, "prediction_type": "epsilon",
                        "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "set_alpha_to_one": True,
                        "steps_offset": 1, "thresholding": False, "timestep_scaling": 10.0,
                        "timestep_spacing": "leading", "trained_betas": None}


class LCM:
    """LCMScheduler (diffusers 0.27): timesteps drawn from the distillation schedule of original_inference_steps
    (strength cuts that schedule, as the LCM img2img pipeline passes it to set_timesteps), consistency boundary
    scalings at t * timestep_scaling, noise injected between steps (given by the caller, never on the last)."""
    order = 1

    def __init__(self, cfg=LCM_SCHEDULER_CONFIG):
        self.cfg = cfg
        self.ac, _ = alphas_cumprod(cfg)
        self.final_ac = torch.tensor(1.0) if cfg.get("set_alpha_to_one", True) else self.ac[0]
        self.clip = cfg.get("clip_sample", False)
        self.vpred = cfg.get("prediction_type", "epsilon") == "v_prediction"

    def set_timesteps(self, n, strength=1.0, original_inference_steps=None):
        T = self.cfg["num_train_timesteps"]
        orig = original_inference_steps or self.cfg.get("original_inference_steps", 50)
        if orig > T:
            raise ValueError("original_steps larger than num_train_timesteps")
        k = T // orig
        origin = np.asarray(list(range(1, int(orig * strength) + 1))) * k - 1
        if len(origin) // n < 1:
            raise ValueError("original_steps x strength is smaller than num_inference_steps")
        if n > orig:
            raise ValueError("num_inference_steps larger than original_inference_steps")
        origin = origin[::-1].copy()
        idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
        self.timesteps = torch.from_numpy(origin[idx].copy()).long()
        self.n = n
        self.step_index = None

    def scalings(self, t):
        scaled = t * self.cfg.get("timestep_scaling", 10.0)
        return 0.5 ** 2 / (scaled ** 2 + 0.5 ** 2), scaled / (scaled ** 2 + 0.5 ** 2) ** 0.5

    def step(self, out, t, x, noise):
        """(prev_sample, denoised); noise is used on every step but the last."""
        if self.step_index is None:
            idx = (self.timesteps == t).nonzero()
            self.step_index = idx[1 if len(idx) > 1 else 0].item()
        p = self.step_index + 1
        prev_t = self.timesteps[p] if p < len(self.timesteps) else t
        a_t = self.ac[t]
        a_p = self.ac[prev_t] if prev_t >= 0 else self.final_ac
        b_t, b_p = 1 - a_t, 1 - a_p
        c_skip, c_out = self.scalings(t)
        if self.vpred:
            x0 = a_t.sqrt() * x - b_t.sqrt() * out
        else:
            x0 = (x - b_t.sqrt() * out) / a_t.sqrt()
        if self.clip:
            x0 = x0.clamp(-self.cfg["clip_sample_range"], self.cfg["clip_sample_range"])
        denoised = c_out * x0 + c_skip * x
        prev = a_p.sqrt() * denoised + b_p.sqrt() * noise if self.step_index != self.n - 1 else denoised
        self.step_index += 1
        return prev, denoised


class TCD(LCM):
    """TCDScheduler (diffusers 0.27): LCMScheduler's timesteps (strength in set_timesteps, as the LCM img2img
    pipeline passes it), its own step: x0 and eps from the model output, the DDIM update to
    s = floor((1 - eta) * prev_t), then noise from s to prev_t when eta > 0 and not on the last step, whose prev_t
    is 0. The pipeline decodes the step's second value, which on the last step is the sample itself."""

    def __init__(self, cfg=LCM_SCHEDULER_CONFIG, eta=0.3):
        super().__init__(cfg)
        self.eta = eta

    def step(self, out, t, x, noise):
        if self.step_index is None:
            idx = (self.timesteps == t).nonzero()
            self.step_index = idx[1 if len(idx) > 1 else 0].item()
        p = self.step_index + 1
        prev_t = self.timesteps[p] if p < len(self.timesteps) else torch.tensor(0)
        s_t = torch.floor((1 - self.eta) * prev_t).to(dtype=torch.long)
        a_t = self.ac[t]
        b_t = 1 - a_t
        a_p = self.ac[prev_t] if prev_t >= 0 else self.final_ac
        a_s = self.ac[s_t]
        b_s = 1 - a_s
        if self.vpred:
            x0 = (a_t ** 0.5) * x - (b_t ** 0.5) * out
            e = (a_t ** 0.5) * out + (b_t ** 0.5) * x
        else:
            x0 = (x - b_t.sqrt() * out) / a_t.sqrt()
            e = out
        xs = a_s.sqrt() * x0 + b_s.sqrt() * e
        if self.eta > 0 and self.step_index != self.n - 1:
            prev = (a_p / a_s).sqrt() * xs + (1 - a_p / a_s).sqrt() * noise
        else:
            prev = xs
        self.step_index += 1
        return prev, xs


def make_scheduler(kind, cfg=SD_SCHEDULER_CONFIG):
    return {"ddim": DDIM, "dpm": DPMSolverPP, "lcm": LCM, "tcd": TCD}[kind](cfg)


# ---------------------------------------------------------------------------------------------------------
# Philox4x32-10 and its normals, as common/philox.{h,c} define them (the engine's noise; cuRAND's layout)
# ---------------------------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1
PHILOX_ENGINE_STEP = 0xE7A3


def philox_mix(a, b):
    z = (a * 0x9E3779B97F4A7C15 + b + 0x632BE59BD9B4E019) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _philox_block(seed, stream, block):
    c = [block & 0xFFFFFFFF, block >> 32 & 0xFFFFFFFF, stream & 0xFFFFFFFF, stream >> 32 & 0xFFFFFFFF]
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c


def philox_normal(seed, stream, n):
    """philox_fill_normal: element 4j+k from block j, Box-Muller on word pairs in float32 (cuRAND's)."""
    f = np.float32
    scale = f(2.3283064e-10)
    inv2pi = f(scale * f(6.2831855))
    out = []
    for j in range((n + 3) // 4):
        w = _philox_block(seed, stream, j)
        for x, y in ((w[0], w[1]), (w[2], w[3])):
            u = f(f(x) * scale + scale / f(2))
            v = f(f(y) * inv2pi + inv2pi / f(2))
            s = np.sqrt(f(-2) * np.log(u))
            out += [f(s * np.sin(v)), f(s * np.cos(v))]
    return torch.from_numpy(np.array(out[:n], dtype=np.float32))


# ---------------------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------------------

class SDModel:
    def __init__(self, tokenizer, clip, unet, vae, sched_cfg=SD_SCHEDULER_CONFIG):
        self.tok, self.clip, self.unet, self.vae, self.sched_cfg = tokenizer, clip, unet, vae, sched_cfg

    @torch.no_grad()
    def encode_prompts(self, prompts):
        ids = torch.tensor([self.tok(p) for p in prompts], dtype=torch.int64)
        return self.clip(ids)

    @torch.no_grad()
    def cfg_eps(self, x, t, ctx, guidance):
        """x [B,...], ctx [2B,77,D] = cat(uncond, cond): eps_u + g (eps_c - eps_u), UNet at batch 2B."""
        e = self.unet(torch.cat([x, x]), t, ctx)
        eu, ec = e.chunk(2)
        return eu + guidance * (ec - eu)

    @torch.no_grad()
    def denoise(self, sched, timesteps, x, ctx, guidance, trace=None):
        for i, t in enumerate(timesteps):
            x = sched.step(self.cfg_eps(x, t, ctx, guidance), t, x)
            if trace is not None:
                trace.append(x)
        return x

    @torch.no_grad()
    def decode_image(self, latents):
        sf = self.vae.cfg["scaling_factor"]
        return (self.vae.decode(latents / sf) / 2 + 0.5).clamp(0, 1)

    @staticmethod
    def img2img_timesteps(sched, n, strength):
        sched.set_timesteps(n)
        init = min(int(n * strength), n)
        t_start = max(n - init, 0)
        return sched.timesteps[t_start * sched.order:]

    @torch.no_grad()
    def img2img(self, image, prompts, strength, n, guidance, vae_noise, latent_noise, kind, trace=None):
        """StableDiffusionImg2ImgPipeline (0.19) with the two noises given: z0 = sf * (mean + std vae_noise),
        x = add_noise(z0, latent_noise, first kept timestep), then CFG denoising; returns (image, info)."""
        B = image.shape[0]
        ctx = torch.cat([self.encode_prompts([""] * B), self.encode_prompts(prompts)])
        sched = make_scheduler(kind, self.sched_cfg)
        ts = self.img2img_timesteps(sched, n, strength)
        mean, logvar = self.vae.encode(image)
        z0 = self.vae.cfg["scaling_factor"] * self.vae.sample(mean, logvar, vae_noise)
        x = add_noise(sched.ac, z0, latent_noise, ts[0])
        info = {"timesteps": ts, "z0": z0, "x_init": x, "ctx": ctx}
        x = self.denoise(sched, ts, x, ctx, guidance, trace)
        return self.decode_image(x), info

    @torch.no_grad()
    def lcm(self, image, prompt, n, strength, guidance, vae_noise, latent_noise, seed, stream, sched_cfg,
            trace=None, tcd_eta=None):
        """One item through LatentConsistencyModel(Img2Img)Pipeline (0.27) with an LCM-distilled UNet: strength in
        set_timesteps, z0 and add_noise at the first timestep as img2img (txt2img: image None, x = latent_noise),
        one UNet call per step with timestep_cond = guidance embedding of guidance - 1 (no CFG), the scheduler's
        noise after step i = philox_normal(seed, mix(mix(stream, PHILOX_ENGINE_STEP), i)); decodes `denoised`.
        tcd_eta: TCDScheduler with that eta in place of LCMScheduler (the same pipeline)."""
        ctx = self.encode_prompts([prompt])
        sched = LCM(sched_cfg) if tcd_eta is None else TCD(sched_cfg, tcd_eta)
        sched.set_timesteps(n, strength)
        ts = sched.timesteps
        if image is not None:
            mean, logvar = self.vae.encode(image)
            z0 = self.vae.cfg["scaling_factor"] * self.vae.sample(mean, logvar, vae_noise)
            x = add_noise(sched.ac, z0, latent_noise, ts[:1])
        else:
            x = latent_noise * 1.0
        info = {"timesteps": ts, "x_init": x}
        w = guidance_scale_embedding(torch.tensor(guidance - 1).repeat(1), self.unet.cfg["time_cond_proj_dim"])
        for i, t in enumerate(ts):
            out = self.unet(x, t, ctx, timestep_cond=w)
            noise = philox_normal(seed, philox_mix(philox_mix(stream, PHILOX_ENGINE_STEP), i), x.numel())
            x, denoised = sched.step(out, t, x, noise.reshape(x.shape))
            if trace is not None:
                trace.append(x)
        return self.decode_image(denoised), info

    @torch.no_grad()
    def txt2img(self, prompts, n, guidance, latent_noise, kind, trace=None):
        B = latent_noise.shape[0]
        ctx = torch.cat([self.encode_prompts([""] * B), self.encode_prompts(prompts)])
        sched = make_scheduler(kind, self.sched_cfg)
        sched.set_timesteps(n)
        x = self.denoise(sched, sched.timesteps, latent_noise * 1.0, ctx, guidance, trace)  # init_noise_sigma 1
        return self.decode_image(x), {"timesteps": sched.timesteps, "ctx": ctx}


# ---------------------------------------------------------------------------------------------------------
# LoRA: diffusers 0.19 load_lora_weights and kohya-ss files, as unmerged branches beside the layers
# ---------------------------------------------------------------------------------------------------------

class LoRALayer(nn.Module):
    """A Linear or Conv2d with LoRA branches beside it, unmerged, as diffusers 0.19 computes them
    (LoRAAttnProcessor: attn.to_q(x) + scale * to_q_lora(x); LoRACompatibleLinear/Conv: base(x) + lora_layer(x);
    PatchedLoraProjection in the text encoder) and kohya-ss's LoRAModule does (org_forward(x) +
    lora_up(lora_down(x)) * multiplier * scale, lora_down a Conv2d with the layer's kernel, stride and padding and
    lora_up a 1x1 Conv2d for a convolution). Each branch: up(down(x)) * network_alpha / rank (when an alpha is
    given) * the user's multiplier."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.branches = []   # (down, up, factor)

    def add(self, down, up, factor):
        self.branches.append((down.float(), up.float(), float(factor)))

    def forward(self, x):
        y = self.base(x)
        for down, up, factor in self.branches:
            if isinstance(self.base, nn.Conv2d):
                d = down if down.dim() == 4 else down[:, :, None, None]
                h = F.conv2d(x, d, stride=self.base.stride, padding=self.base.padding)
                h = F.conv2d(h, up if up.dim() == 4 else up[:, :, None, None])
            else:
                h = F.linear(F.linear(x, down.reshape(down.shape[0], -1)), up.reshape(up.shape[0], -1))
            y = y + factor * h
        return y


def _lora_module(model, name):
    mod = model.get_submodule(name)
    if not isinstance(mod, LoRALayer):
        assert isinstance(mod, (nn.Linear, nn.Conv2d)), f"{name} is a {type(mod).__name__}"
        parent, _, last = name.rpartition(".")
        mod = LoRALayer(mod)
        setattr(model.get_submodule(parent) if parent else model, last, mod)
    return mod


def lora_diffusers_0_19(sd):
    """(part, module, down, up, alpha) of a diffusers-format file, read as 0.19's load_lora_weights does:
    load_lora_into_unet strips "unet." (all keys prefixed: the new format; none: the old, UNet only) and
    load_attn_procs groups keys by all but their last three components: "<attn>.processor" + to_{q,k,v,out}_lora
    .{down,up}.weight (LoRAAttnProcessor; to_out is to_out.0) or "<module>" + lora.{down,up}.weight
    (LoRACompatibleLinear/Conv); load_lora_into_text_encoder renames to_{q,k,v,out}_lora to {q,k,v,out}_proj
    .lora_linear_layer. No alpha: network_alpha only comes from kohya files."""
    new = all(k.startswith("unet.") or k.startswith("text_encoder.") for k in sd)
    assert all("lora" in k for k in sd)
    groups = {}
    for k, v in sd.items():
        part, rest = ("unet", k)
        if new:
            part, _, rest = k.partition(".")
        if part == "unet":
            mod, sub = ".".join(rest.split(".")[:-3]), ".".join(rest.split(".")[-3:])
            if sub.startswith("lora."):
                role = sub.split(".")[1]
            else:
                proc, role = sub.split(".")[0], sub.split(".")[1]
                assert mod.endswith(".processor")
                mod = mod[:-len(".processor")] + "." + {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v",
                                                         "to_out_lora": "to_out.0"}[proc]
        else:
            for a, b in (("to_q_lora", "q_proj.lora_linear_layer"), ("to_k_lora", "k_proj.lora_linear_layer"),
                         ("to_v_lora", "v_proj.lora_linear_layer"), ("to_out_lora", "out_proj.lora_linear_layer")):
                rest = rest.replace(a, b)
            mod, _, tail = rest.partition(".lora_linear_layer.")
            role = tail.split(".")[0]
        groups.setdefault((part, mod), {})[role] = v
    return [(p, m, g["down"], g["up"], None) for (p, m), g in groups.items()]


def lora_kohya(sd, unet, text_encoder):
    """(part, module, down, up, alpha) of a kohya-ss file: sd-scripts names each LoRA module
    prefix + module_name.replace(".", "_") (lora_unet_, lora_te_) over the model's named modules, so the module is
    found by spelling every Linear/Conv2d name of the model that way."""
    names = {}
    for part, prefix, model in (("unet", "lora_unet_", unet), ("text_encoder", "lora_te_", text_encoder)):
        for n, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                names[prefix + n.replace(".", "_")] = (part, n)
    out = []
    for k in sd:
        if k.endswith(".lora_down.weight"):
            ln = k[:-len(".lora_down.weight")]
            part, mod = names[ln]
            alpha = sd.get(ln + ".alpha")
            out.append((part, mod, sd[k], sd[ln + ".lora_up.weight"], None if alpha is None else float(alpha)))
    return out


def apply_lora(model, entries, multiplier=1.0):
    """Puts each entry's branch beside its layer: factor = multiplier * (alpha / rank if alpha else 1)."""
    for part, mod, down, up, alpha in entries:
        target = model.unet if part == "unet" else model.clip
        rank = down.shape[0]
        _lora_module(target, mod).add(down, up, multiplier * (alpha / rank if alpha is not None else 1.0))


# ---------------------------------------------------------------------------------------------------------
# safetensors, JSON, PNG
# ---------------------------------------------------------------------------------------------------------

_ST_DT = {torch.float32: ("F32", np.float32), torch.float16: ("F16", np.float16),
          torch.int64: ("I64", np.int64), torch.int32: ("I32", np.int32)}
_ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "BF16": None}


def _atomic_write(path, data, mode="wb"):
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path, obj):
    _atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", "w")


def write_text(path, s):
    _atomic_write(path, s, "w")


def save_safetensors(tensors, path, metadata=None):
    """Writes a dict name -> tensor (F32/F16/I64/I32) as safetensors; data packed by dtype size then name, so
    every tensor is naturally aligned; header padded with spaces to a multiple of 8."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {}, [], 0
    for name, t in items:
        code, npdt = _ST_DT[t.dtype]
        b = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.dtype(npdt).newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    _atomic_write(path, struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=np.dtype(_ST_NP[e["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("=")).reshape(e["shape"]).copy())
    return out


def write_png(path, rgb):
    """rgb: uint8 numpy [H,W,3] -> 8-bit RGB PNG (no filter)."""
    import zlib
    H, W, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(H))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    _atomic_write(path, png)


# ---------------------------------------------------------------------------------------------------------
# Original (CompVis/LDM) single-file checkpoint names
# ---------------------------------------------------------------------------------------------------------

_RES_D2L = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
            "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_RES_L2D = {v: k for k, v in _RES_D2L.items()}
_VRES_D2L = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VRES_L2D = {v: k for k, v in _VRES_D2L.items()}
_VATT_D2L = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VATT_L2D = {v: k for k, v in _VATT_D2L.items()}


def _unet_layout(cfg):
    """(diffusers prefix, LDM prefix, kind) for every sub-module of the UNet; kind 'res' renames resnet
    sub-names, 'same' keeps the rest of the name."""
    L, n = cfg["layers_per_block"], len(cfg["block_out_channels"])
    rows = [("time_embedding.linear_1", "time_embed.0", "same"), ("time_embedding.linear_2", "time_embed.2", "same"),
            ("conv_in", "input_blocks.0.0", "same"), ("conv_norm_out", "out.0", "same"),
            ("conv_out", "out.2", "same"),
            ("mid_block.resnets.0", "middle_block.0", "res"), ("mid_block.attentions.0", "middle_block.1", "same"),
            ("mid_block.resnets.1", "middle_block.2", "res")]
    for i, kind in enumerate(cfg["down_block_types"]):
        for j in range(L):
            k = 1 + i * (L + 1) + j
            rows.append((f"down_blocks.{i}.resnets.{j}", f"input_blocks.{k}.0", "res"))
            if kind == "CrossAttnDownBlock2D":
                rows.append((f"down_blocks.{i}.attentions.{j}", f"input_blocks.{k}.1", "same"))
        if i < n - 1:
            rows.append((f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{1 + i * (L + 1) + L}.0.op", "same"))
    for i, kind in enumerate(cfg["up_block_types"]):
        att = kind == "CrossAttnUpBlock2D"
        for j in range(L + 1):
            k = i * (L + 1) + j
            rows.append((f"up_blocks.{i}.resnets.{j}", f"output_blocks.{k}.0", "res"))
            if att:
                rows.append((f"up_blocks.{i}.attentions.{j}", f"output_blocks.{k}.1", "same"))
        if i < n - 1:
            rows.append((f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{i * (L + 1) + L}.{2 if att else 1}.conv",
                         "same"))
    return rows


def _vae_layout(cfg):
    n, L = len(cfg["block_out_channels"]), cfg["layers_per_block"]
    rows = [("quant_conv", "quant_conv", "same"), ("post_quant_conv", "post_quant_conv", "same")]
    for side in ("encoder", "decoder"):
        rows += [(f"{side}.conv_in", f"{side}.conv_in", "same"), (f"{side}.conv_out", f"{side}.conv_out", "same"),
                 (f"{side}.conv_norm_out", f"{side}.norm_out", "same"),
                 (f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", "vres"),
                 (f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", "vres"),
                 (f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", "vatt")]
    for i in range(n):
        for j in range(L):
            rows.append((f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", "vres"))
        if i < n - 1:
            rows.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", "same"))
        for j in range(L + 1):   # decoder up index is reversed in LDM
            rows.append((f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{n - 1 - i}.block.{j}", "vres"))
        if i < n - 1:
            rows.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{n - 1 - i}.upsample.conv", "same"))
    return rows


def _map(name, rows, forward):
    for d, l, kind in rows:
        src, dst = (d, l) if forward else (l, d)
        if name.startswith(src + "."):
            rest = name[len(src) + 1:]
            if kind in ("res", "vres"):
                table = (_RES_D2L if kind == "res" else _VRES_D2L) if forward else \
                    (_RES_L2D if kind == "res" else _VRES_L2D)
                sub, leaf = rest.rsplit(".", 1)
                rest = table[sub] + "." + leaf
            elif kind == "vatt":
                table = _VATT_D2L if forward else _VATT_L2D
                sub, leaf = rest.rsplit(".", 1)
                rest = table[sub] + "." + leaf
            return dst + "." + rest
    raise KeyError(f"no mapping for {name}")


def to_single_file(unet_sd, vae_sd, clip_sd, unet_cfg, vae_cfg):
    """diffusers/transformers state dicts -> one original SD 1.x checkpoint dict (VAE mid-attention q/k/v/proj_out
    as [C,C,1,1] conv weights), plus the schedule buffers real checkpoints carry."""
    out = {}
    ur, vr = _unet_layout(unet_cfg), _vae_layout(vae_cfg)
    for k, v in unet_sd.items():
        out["model.diffusion_model." + _map(k, ur, True)] = v
    for k, v in vae_sd.items():
        nk = _map(k, vr, True)
        if ".mid.attn_1." in nk and nk.endswith(".weight") and v.dim() == 2:
            v = v[:, :, None, None]
        out["first_stage_model." + nk] = v
    for k, v in clip_sd.items():
        out["cond_stage_model.transformer." + k] = v
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    ac, betas = alphas_cumprod()
    prev = torch.cat([torch.ones(1), ac[:-1]])
    out["betas"], out["alphas_cumprod"], out["alphas_cumprod_prev"] = betas, ac, prev
    out["sqrt_alphas_cumprod"], out["sqrt_one_minus_alphas_cumprod"] = ac.sqrt(), (1 - ac).sqrt()
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return out


def from_single_file(sd, unet_cfg, vae_cfg):
    """Inverse of to_single_file (the loader's job), used to check the mapping round-trips."""
    ur, vr = _unet_layout(unet_cfg), _vae_layout(vae_cfg)
    unet, vae, clip = {}, {}, {}
    for k, v in sd.items():
        if k.startswith("model.diffusion_model."):
            unet[_map(k[len("model.diffusion_model."):], ur, False)] = v
        elif k.startswith("first_stage_model."):
            nk = _map(k[len("first_stage_model."):], vr, False)
            if ".mid_block.attentions.0.to_" in nk and nk.endswith(".weight") and v.dim() == 4:
                v = v[:, :, 0, 0]
            vae[nk] = v
        elif k.startswith("cond_stage_model.transformer.") and not k.endswith("position_ids"):
            clip[k[len("cond_stage_model.transformer."):]] = v
    return unet, vae, clip


def write_diffusers(dirpath, model, unet_cfg, vae_cfg, clip_cfg, merges, dtype=torch.float32,
                    deprecated_vae_names=False, clip_position_ids=False):
    """A complete diffusers StableDiffusionPipeline folder."""
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        os.makedirs(os.path.join(dirpath, sub), exist_ok=True)
    write_json(os.path.join(dirpath, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.19.0",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    write_json(os.path.join(dirpath, "scheduler", "scheduler_config.json"), SD_SCHEDULER_CONFIG)
    write_json(os.path.join(dirpath, "unet", "config.json"), unet_cfg)
    write_json(os.path.join(dirpath, "vae", "config.json"), vae_cfg)
    ccfg = dict(clip_cfg, torch_dtype="float16" if dtype == torch.float16 else "float32")
    write_json(os.path.join(dirpath, "text_encoder", "config.json"), ccfg)
    write_tokenizer(os.path.join(dirpath, "tokenizer"), model.tok.vocab, merges)

    def cast(sd):
        return {k: v.detach().to(dtype) for k, v in sd.items()}

    save_safetensors(cast(model.unet.state_dict()), os.path.join(dirpath, "unet", "diffusion_pytorch_model.safetensors"))
    vsd = cast(model.vae.state_dict())
    if deprecated_vae_names:
        vsd = vae_to_deprecated_names(vsd)
    save_safetensors(vsd, os.path.join(dirpath, "vae", "diffusion_pytorch_model.safetensors"))
    csd = cast(model.clip.state_dict())
    if clip_position_ids:
        csd["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    save_safetensors(csd, os.path.join(dirpath, "text_encoder", "model.safetensors"), {"format": "pt"})


def load_weights(module, path):
    """A safetensors file's tensors (F16/BF16 stored: F32 here) into module, every name checked; returns it."""
    sd = {k: v.float() for k, v in load_safetensors(path).items() if not k.endswith("position_ids")}
    module.load_state_dict(sd, strict=True)
    return module


def load_diffusers(d):
    """A diffusers StableDiffusionPipeline folder (as write_diffusers writes it) as an SDModel in eval mode."""
    def cfg(sub, name="config.json"):
        with open(os.path.join(d, sub, name)) as f:
            return json.load(f)

    tok = CLIPTokenizer.from_files(os.path.join(d, "tokenizer", "vocab.json"), os.path.join(d, "tokenizer", "merges.txt"))
    clip = load_weights(CLIPTextModel(cfg("text_encoder")), os.path.join(d, "text_encoder", "model.safetensors"))
    unet = load_weights(UNet2DConditionModel(cfg("unet")), os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
    vae = load_weights(AutoencoderKL(cfg("vae")), os.path.join(d, "vae", "diffusion_pytorch_model.safetensors"))
    for m in (clip, unet, vae):
        m.eval()
    return SDModel(tok, clip, unet, vae, cfg("scheduler", "scheduler_config.json"))


def round_weights(module, dtype):
    """Rounds every parameter through dtype (e.g. F16) so the F32 reference computes from the stored weights."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
