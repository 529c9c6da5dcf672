"""Tiny Hugging Face checkpoints written by the tests (PyTorch `transformers` + tokenizer files)."""

from __future__ import annotations

import pathlib
import random

from conftest import NEGATIVE, NOUNS, POSITIVE, VOCABULARY

WORDPIECES = ["##s", "##ed", "##ing", "##ly", "a", "is", "not", "very", "it", "this", "film", "good", "bad"]


def parity_sentences(n: int = 1000, seed: int = 0) -> list[str]:
    """Mixed case, punctuation, accents, CJK, emoji, digits, whitespace runs and over-long texts."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + NOUNS + ["the", "was", "and", "it's", "don't", "U.S.A.", "e-mail", "3.14", "$5"]
    odd = ["Café", "naïve", "Straße", "über", "東京", "映画", "😀", "—", "«quote»", "ÉCOLE", "Ñandú", "x²", "\t", "  "]
    sentences = []
    for i in range(n):
        length = rng.choice([1, 3, 8, 15]) if i % 20 else rng.randint(60, 120)  # every 20th is over-long
        tokens = [rng.choice(odd) if rng.random() < 0.15 else rng.choice(words) for _ in range(length)]
        tokens = [t.upper() if rng.random() < 0.1 else t.capitalize() if rng.random() < 0.2 else t for t in tokens]
        sentence = " ".join(tokens) + rng.choice(["", ".", "!", "?!", " ...", ","])
        sentences.append(sentence)
    return sentences


def _corpus() -> list[str]:
    return parity_sentences(400, seed=1)


def byte_level_alphabet() -> list[str]:
    """The characters byte-level BPE writes for bytes 0..255, from `transformers` (GPT-2's table)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    table = bytes_to_unicode()  # {byte: character}
    return [table[b] for b in range(256)]


def write_bert(path: pathlib.Path, distil: bool = False, **config) -> pathlib.Path:
    """A 2-layer, 32-wide BERT (or DistilBERT) checkpoint; `config` overrides `BertConfig` fields."""
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    vocab = VOCABULARY + [w for w in WORDPIECES if w not in VOCABULARY]
    (path / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    if distil:
        config = transformers.DistilBertConfig(
            vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
        )
        # Saved as the Hub's checkpoints are (keys prefixed `distilbert.`): keras-hub's
        # converter does not read a bare DistilBertModel's unprefixed keys.
        model = transformers.DistilBertForMaskedLM(config)
        tokenizer = transformers.DistilBertTokenizerFast(str(path / "vocab.txt"), do_lower_case=True)
    else:
        config = transformers.BertConfig(
            vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, **config,
        )
        model = transformers.BertModel(config)
        tokenizer = transformers.BertTokenizerFast(str(path / "vocab.txt"), do_lower_case=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_roberta(path: pathlib.Path) -> pathlib.Path:
    """A byte-level BPE checkpoint, with a BPE vocabulary trained on the parity corpus."""
    import tokenizers
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=400, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(path))  # vocab.json, merges.txt
    tokenizer = transformers.RobertaTokenizerFast(str(path / "vocab.json"), str(path / "merges.txt"))
    config = transformers.RobertaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
    )
    transformers.RobertaForMaskedLM(config).save_pretrained(path, safe_serialization=True)  # as on the Hub
    tokenizer.save_pretrained(path)
    return path


def _sentencepiece_model(path: pathlib.Path, **options) -> pathlib.Path:
    """A small unigram SentencePiece model trained on the parity corpus."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=model, vocab_size=180, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, minloglevel=2, **options,
    )
    path.write_bytes(model.getvalue())
    return path


def write_xlm_roberta(path: pathlib.Path) -> pathlib.Path:
    """An XLM-RoBERTa checkpoint with a SentencePiece vocabulary (fairseq ids: <unk>=0, <s>=1, </s>=2)."""
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.XLMRobertaTokenizer(str(_sentencepiece_model(path / "spm.model")))
    config = transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
    )
    transformers.XLMRobertaForMaskedLM(config).save_pretrained(path, safe_serialization=True)  # as on the Hub
    tokenizer.save_pretrained(path)  # sentencepiece.bpe.model
    (path / "spm.model").unlink()
    return path


def write_albert(path: pathlib.Path) -> pathlib.Path:
    """An ALBERT checkpoint (one shared layer group) with ALBERT's SentencePiece special tokens."""
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    proto = _sentencepiece_model(
        path / "spm.model", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="<pad>", unk_piece="<unk>",
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
    )
    tokenizer = transformers.AlbertTokenizer(str(proto))
    config = transformers.AlbertConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    transformers.AlbertForPreTraining(config).save_pretrained(path, safe_serialization=True)  # with the pooler
    tokenizer.save_pretrained(path)  # spiece.model
    (path / "spm.model").unlink()
    return path


def write_electra(path: pathlib.Path, **config) -> pathlib.Path:
    """An ELECTRA discriminator with a 16-wide embedding projected to 32 (`embeddings_project`), BERT's WordPiece.

    Weights are drawn wide (`initializer_range=0.3`), so that a detail such as
    exact against approximate GELU moves the outputs past the parity tolerance.
    """
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    vocab = VOCABULARY + [w for w in WORDPIECES if w not in VOCABULARY]
    (path / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    config = transformers.ElectraConfig(
        vocab_size=len(vocab), embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, initializer_range=0.3, **config,
    )
    transformers.ElectraForPreTraining(config).save_pretrained(path, safe_serialization=True)  # as on the Hub
    transformers.ElectraTokenizerFast(str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    return path


def write_deberta_v3(path: pathlib.Path, **config) -> pathlib.Path:
    """A DeBERTa-v3 checkpoint (`deberta-v2` with v3's settings), SentencePiece ids as in the v3 vocabularies.

    `position_buckets=8` over `max_relative_positions=64`: texts longer than 4
    pieces reach the log-scaled buckets. Weights are drawn 15x wider than
    Hugging Face's default (`initializer_range=0.3`), so that the relative
    positions move the outputs by far more than the parity tolerance.
    """
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    proto = _sentencepiece_model(
        path / "spm.model", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]",
    )
    tokenizer = transformers.DebertaV2Tokenizer(str(proto))
    settings = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type="p2c|c2p", layer_norm_eps=1e-7, max_relative_positions=-1,
        position_biased_input=False, type_vocab_size=0, initializer_range=0.3,
    )
    config = transformers.DebertaV2Config(**{**settings, **config})
    transformers.DebertaV2ForMaskedLM(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)  # spm.model, as the v3 checkpoints name it
    return path


def write_modernbert(path: pathlib.Path, **config) -> pathlib.Path:
    """A 3-layer ModernBERT (global attention in layers 0 and 2, a window of 8 positions (4 each side) in layer 1)
    with a byte-level BPE `tokenizer.json` as ModernBERT's: no prefix space, `[CLS] a [SEP] b [SEP]`.

    Weights are drawn wide (`initializer_range=0.3`), so that a wrong rotary
    base or window moves the outputs past the parity tolerance.
    """
    import tokenizers
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(), tokenizers.trainers.BpeTrainer(
        vocab_size=400, min_frequency=2, special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    cls, sep = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]")
    settings = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=128, global_attn_every_n_layers=2, local_attention=8, global_rope_theta=160000.0,
        local_rope_theta=10000.0, pad_token_id=bpe.token_to_id("[PAD]"), cls_token_id=cls, sep_token_id=sep,
        bos_token_id=cls, eos_token_id=sep, initializer_range=0.3, attn_implementation="eager",
    )
    model = transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(**{**settings, **config}))
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
