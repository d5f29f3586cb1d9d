"""Configuration of the builtin NorBERT4-style (GPT-BERT) model.

This file is shipped inside the model folder as remote code, like the one in
``ltg/norbert4-*``: it is loaded with ``trust_remote_code=True`` through the
``auto_map`` entry of ``config.json``.
"""
from transformers import PretrainedConfig


class GptBertConfig(PretrainedConfig):
    model_type = "gpt_bert"

    def __init__(
        self,
        vocab_size=8192,
        hidden_size=128,
        intermediate_size=320,
        num_layers=2,
        num_attention_heads=4,
        query_key_head_size=32,
        value_head_size=32,
        max_sequence_length=512,
        layer_norm_eps=1e-5,
        embedding_dropout=0.1,
        attention_dropout=0.1,
        hidden_dropout=0.1,
        classifier_dropout=0.1,
        local_global_ratio=2,
        local_window_length=128,
        global_window_length=512,
        is_decoder=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        mask_token_id=4,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.query_key_head_size = query_key_head_size
        self.value_head_size = value_head_size
        self.max_sequence_length = max_sequence_length
        self.layer_norm_eps = layer_norm_eps
        self.embedding_dropout = embedding_dropout
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.classifier_dropout = classifier_dropout
        self.local_global_ratio = local_global_ratio
        self.local_window_length = local_window_length
        self.global_window_length = global_window_length
        self.is_decoder = is_decoder
        self.mask_token_id = mask_token_id
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **kwargs,
        )

    @property
    def num_hidden_layers(self):
        return self.num_layers
