"""Helpers for the feature-extraction tests: tiny media and tiny checkpoints.

Every checkpoint is a random-init model from a tiny config written with
``save_pretrained`` (safetensors), loaded back through the same offline path a real one
takes. Tokenizers are built from a vocabulary written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WORDS = ("the cat sat on a mat and dog ran to park with ball red blue sky sun "
         "we saw it then he she they go come home friend coffee").split()


def make_video(path: Path, seconds: float = 6.0, fps: int = 10, size=(48, 64), audio: bool = True,
               seed: int = 0) -> Path:
    """A small mp4: a bright square moving over a gradient, and a tone whose pitch changes."""
    import av

    rng = np.random.default_rng(seed)
    h, w = size
    n = int(round(seconds * fps))
    container = av.open(str(path), mode="w")
    vs = container.add_stream("mpeg4", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.codec_context.gop_size = 5
    if audio:
        sr = 16000
        astream = container.add_stream("aac", rate=sr)
        astream.layout = "mono"
    base = np.linspace(0, 200, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    for i in range(n):
        img = base.copy()
        x = int((i * 3) % (w - 12))
        img[10:22, x:x + 12] = 255 * (0.5 + 0.5 * np.sin(i / 5.0))
        img[..., 1] += 20 * rng.random()
        frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
        for packet in vs.encode(frame):
            container.mux(packet)
    for packet in vs.encode():
        container.mux(packet)
    if audio:
        t = np.arange(int(seconds * sr)) / sr
        sig = (0.3 * np.sin(2 * np.pi * (220 + 60 * np.floor(t)) * t)).astype(np.float32)
        step = 1024
        for k in range(0, len(sig), step):
            chunk = sig[k:k + step]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = sr
            frame.pts = k
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def make_words(seconds: float = 6.0, rate_hz: float = 2.5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    onsets = np.arange(0.1, seconds - 0.1, 1.0 / rate_hz)
    words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), len(onsets))]
    return pd.DataFrame({"onset_s": onsets, "duration_s": np.full(len(onsets), 0.3), "word": words})


def write_bert_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder / "vocab.txt"


def tiny_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = write_bert_vocab(folder)
    try:  # transformers 5: BertTokenizerFast(vocab=path or dict)
        tok = BertTokenizerFast(vocab=str(vocab))
    except TypeError:  # transformers 4
        tok = BertTokenizerFast(vocab_file=str(vocab))
    assert tok.unk_token_id not in tok("the cat")["input_ids"]
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    return folder


def tiny_bpe_tokenizer(folder: Path, clip: bool = False):
    """A GPT-2 style byte-level BPE tokenizer trained on the test words (tokenizers lib).

    ``clip=True`` adds CLIP's start/end tokens around every text and a pad token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + (["<|startoftext|>"] if clip else [])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    bos = "<|startoftext|>" if clip else "<|endoftext|>"
    if clip:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A <|endoftext|>",
            special_tokens=[(bos, tk.token_to_id(bos)), ("<|endoftext|>", tk.token_to_id("<|endoftext|>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>" if clip else None)
    fast.save_pretrained(folder)
    return fast


def tiny_gpt2(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2Model

    tok = tiny_bpe_tokenizer(folder)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    GPT2Model(cfg).save_pretrained(folder)
    return folder


def tiny_llama(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_bpe_tokenizer(folder)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def tiny_vit(folder: Path, image_size: int = 32, hidden: int = 32, layers: int = 2) -> Path:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(image_size=image_size, patch_size=8, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=2, intermediate_size=2 * hidden)
    torch.manual_seed(0)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def tiny_clip(folder: Path, image_size: int = 32) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = tiny_bpe_tokenizer(folder, clip=True)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=64, eos_token_id=tok.eos_token_id,
                bos_token_id=tok.bos_token_id, pad_token_id=tok.eos_token_id)
    vision = dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=2)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def tiny_videomae(folder: Path) -> Path:
    import torch
    from transformers import VideoMAEConfig, VideoMAEModel

    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                         num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    VideoMAEModel(cfg).save_pretrained(folder)
    return folder


def tiny_vjepa2(folder: Path) -> Path:
    import torch
    from transformers import VJEPA2Config, VJEPA2Model

    cfg = VJEPA2Config(crop_size=32, patch_size=8, frames_per_clip=4, tubelet_size=2, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=2, pred_hidden_size=32,
                       pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1)
    torch.manual_seed(0)
    VJEPA2Model(cfg).save_pretrained(folder)
    return folder


def tiny_wav2vec2(folder: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
                         feat_extract_norm="layer")
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def tiny_whisper(folder: Path) -> Path:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    cfg = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
                        max_source_positions=100, max_target_positions=16, vocab_size=64,
                        pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3)
    torch.manual_seed(0)
    WhisperModel(cfg).save_pretrained(folder)
    # 2 s of audio -> 200 mel frames -> 100 encoder positions.
    WhisperFeatureExtractor(feature_size=16, chunk_length=2).save_pretrained(folder)
    return folder


def tiny_w2v_bert(folder: Path) -> Path:
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    cfg = Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             output_hidden_size=32, conv_depthwise_kernel_size=5,
                             left_max_position_embeddings=8, right_max_position_embeddings=8)
    torch.manual_seed(0)
    Wav2Vec2BertModel(cfg).save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder
