#!/usr/bin/env python3
"""Writes fixtures/tokenizers/bert-tiny/tokenizer.json: a character-level WordPiece tokenizer
whose ids fit the bert-tiny fixture (vocab_size 112; [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4,
as the fixture's reference.json notes say). It lets the smoke sweep feed real SST-2 text to the
tiny random model. Same JSON layout as an HF BERT tokenizer.json (BertNormalizer lowercasing,
BertPreTokenizer, [CLS] A [SEP] template)."""
import json, string, pathlib

special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
letters = list(string.ascii_lowercase)
digits = list(string.digits)
punct = list(".,'!?-;:()\"`&/$%*+=")
vocab = special + letters + digits + punct + ["##" + c for c in letters + digits]
assert len(vocab) <= 112, len(vocab)
ids = {t: i for i, t in enumerate(vocab)}
tok = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in special
    ],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": True, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [ids["[CLS]"]], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [ids["[SEP]"]], "tokens": ["[SEP]"]},
        },
    },
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100, "vocab": ids},
}
out = pathlib.Path(__file__).resolve().parent.parent / "fixtures/tokenizers/bert-tiny/tokenizer.json"
out.write_text(json.dumps(tok, indent=1) + "\n")
print(out, len(vocab), "tokens")
