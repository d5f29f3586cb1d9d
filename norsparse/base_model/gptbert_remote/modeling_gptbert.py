"""A small GPT-BERT encoder with the masked-LM head of NorBERT4.

Written for norsparse's builtin base model. It keeps the parts of the published
``ltg/norbert4-*`` remote code that matter to sparse retrieval, in the same
places and with the same names, so that the ``patch`` stage handles this model
and the real one the same way:

* ``GptBertForMaskedLM.forward`` soft-caps the logits (``30 * torch.sigmoid(x / 7.5)``),
  then shifts them one position right and prepends a fixed BOS row;
* the rotary tables are non-persistent buffers computed in ``__init__``;
* ``_tied_weights_keys`` is a list, as transformers 4 expected;
* the encoder checkpoints activations with ``use_reentrant=True``.

The last three are what transformers 5 trips over; ``patch`` repairs them.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch.nn import functional as F
from transformers.activations import gelu_new
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.modeling_utils import PreTrainedModel

from .configuration_gptbert import GptBertConfig


class Embedding(nn.Module):
    def __init__(self, config: GptBertConfig):
        super().__init__()
        self.word_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.word_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.word_scale = nn.Parameter(torch.zeros(config.hidden_size))
        self.dropout = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded = self.word_norm(self.word_embedding(input_ids))
        return self.dropout(embedded * (self.word_scale + 1.0))


class LMClassifier(nn.Module):
    def __init__(self, config: GptBertConfig, n_labels: int):
        super().__init__()
        self.pre_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.projection = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.post_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.emb2vocab = nn.Linear(config.hidden_size, n_labels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = gelu_new(self.projection(self.pre_norm(x)))
        return self.emb2vocab(self.post_norm(x))


class RotaryPositionalEmbeddings(nn.Module):
    def __init__(self, config: GptBertConfig, theta: int):
        super().__init__()
        head_size = config.query_key_head_size
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
        angles = torch.outer(torch.arange(config.max_sequence_length, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(0)
        self.register_buffer("cos_matrix", angles.cos(), persistent=False)
        self.register_buffer("sin_matrix", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.shape[2]
        cos = self.cos_matrix[:, None, :seq_len, :]
        sin = self.sin_matrix[:, None, :seq_len, :]
        half = x.size(-1) // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x.float() * cos + rotated.float() * sin).type_as(x)


class SelfAttention(nn.Module):
    def __init__(self, config: GptBertConfig, layer_idx: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.d_qk = config.query_key_head_size
        self.d_v = config.value_head_size
        self.pre_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.qk_proj = nn.Linear(config.hidden_size, 2 * self.num_heads * self.d_qk, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_heads * self.d_v, bias=False)
        self.out_proj = nn.Linear(self.num_heads * self.d_v, config.hidden_size, bias=False)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.attention_dropout = config.attention_dropout
        theta = 160_000 if (layer_idx + 1) % config.local_global_ratio == 0 else 10_000
        self.rope_embedding = RotaryPositionalEmbeddings(config, theta)

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden.shape
        hidden = self.pre_norm(hidden)
        query, key = self.qk_proj(hidden).view(batch, length, 2, self.num_heads, self.d_qk).unbind(2)
        value = self.v_proj(hidden).view(batch, length, self.num_heads, self.d_v)
        query, key, value = (t.transpose(1, 2) for t in (query, key, value))
        query, key = self.rope_embedding(query), self.rope_embedding(key)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=padding_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(batch, length, self.num_heads * self.d_v)
        return self.dropout(self.out_proj(attended))


class FeedForward(nn.Module):
    def __init__(self, config: GptBertConfig):
        super().__init__()
        self.pre_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
        self.up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.up_proj(self.pre_norm(x)).chunk(2, dim=-1)
        return self.dropout(self.down_proj(x * gelu_new(gate)))


class Layer(nn.Module):
    def __init__(self, config: GptBertConfig, layer_idx: int):
        super().__init__()
        self.attention = SelfAttention(config, layer_idx)
        self.mlp = FeedForward(config)

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.attention(hidden, padding_mask)
        return hidden + self.mlp(hidden)


class Encoder(nn.Module):
    def __init__(self, config: GptBertConfig):
        super().__init__()
        self.layers = nn.ModuleList([Layer(config, i) for i in range(config.num_layers)])

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor, checkpoint_activations: bool = False):
        all_layers = [hidden]
        for layer in self.layers:
            if checkpoint_activations:
                hidden = torch.utils.checkpoint.checkpoint(layer, hidden, padding_mask, use_reentrant=True)
            else:
                hidden = layer(hidden, padding_mask)
            all_layers.append(hidden)
        return hidden, all_layers


class GptBertPreTrainedModel(PreTrainedModel):
    config_class = GptBertConfig
    base_model_prefix = "gpt_bert"
    supports_gradient_checkpointing = True

    def _init_weights(self, module):
        std = math.sqrt(2.0 / (5.0 * self.config.hidden_size))
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight.data, mean=0.0, std=std, a=-2 * std, b=2 * std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()


class GptBertModel(GptBertPreTrainedModel):
    def __init__(self, config: GptBertConfig, add_mlm_layer: bool = False, **kwargs):
        super().__init__(config, **kwargs)
        self.config = config
        self.embedding = Embedding(config)
        self.encoder = Encoder(config)
        self.classifier = LMClassifier(config, config.vocab_size) if add_mlm_layer else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embedding.word_embedding

    def set_input_embeddings(self, value):
        self.embedding.word_embedding = value

    def get_contextualized_embeddings(self, input_ids, attention_mask=None, output_hidden_states=None):
        if input_ids is None:
            raise ValueError("You have to specify input_ids")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        padding_mask = attention_mask.bool()[:, None, None, :]
        last_layer, all_layers = self.encoder(
            self.embedding(input_ids), padding_mask,
            checkpoint_activations=self.gradient_checkpointing and self.training,
        )
        return last_layer, (all_layers if output_hidden_states else None)

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=None, return_dict=None, **kwargs):
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        sequence_output, hidden_states = self.get_contextualized_embeddings(input_ids, attention_mask, output_hidden_states)
        if not return_dict:
            return (sequence_output,) + ((hidden_states,) if output_hidden_states else ())
        return BaseModelOutput(last_hidden_state=sequence_output, hidden_states=hidden_states)


class GptBertForMaskedLM(GptBertModel):
    _tied_weights_keys = ["classifier.emb2vocab.weight"]

    def __init__(self, config: GptBertConfig, **kwargs):
        super().__init__(config, add_mlm_layer=True, **kwargs)

    def get_output_embeddings(self):
        return self.classifier.emb2vocab.weight

    def set_output_embeddings(self, new_embeddings):
        self.classifier.emb2vocab.weight = new_embeddings

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        labels: Optional[torch.LongTensor] = None,
        **kwargs,
    ) -> Union[Tuple[torch.Tensor], MaskedLMOutput]:
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict

        sequence_output, hidden_states = self.get_contextualized_embeddings(input_ids, attention_mask, output_hidden_states)
        subword_prediction = self.classifier(sequence_output)
        subword_prediction = 30 * torch.sigmoid(subword_prediction / 7.5)

        masked_lm_loss = None
        if labels is not None:
            labels_flatten = labels[:, 1:].flatten()
            subword_prediction_flatten = subword_prediction[:, :-1].flatten(0, 1)
            masked_lm_loss = F.cross_entropy(subword_prediction_flatten, labels_flatten)

        bos_logits = torch.zeros(subword_prediction.size(0), 1, self.config.vocab_size, dtype=subword_prediction.dtype, device=subword_prediction.device)
        bos_logits[:, :, self.config.bos_token_id] = 1.0
        subword_prediction = torch.cat([bos_logits, subword_prediction[:, :-1]], dim=1)

        if not return_dict:
            output = (subword_prediction,) + ((hidden_states,) if output_hidden_states else ())
            return ((masked_lm_loss,) + output) if masked_lm_loss is not None else output
        return MaskedLMOutput(loss=masked_lm_loss, logits=subword_prediction, hidden_states=hidden_states)
