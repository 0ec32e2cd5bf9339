"""The built-in model ids, known without loading anything (the API lists them from here).
``tests/worker/test_contract.py`` checks this list against ``models.zoo``."""

from __future__ import annotations

BUILTIN_MODELS: dict[str, str] = {
    "shapes": "Shapes demo CNN",
    "cifar10": "Course CIFAR-10 CNN",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "mobilenetv2": "MobileNetV2",
    "xception": "Xception",
    "inceptionv3": "InceptionV3",
    "densenet121": "DenseNet121",
    "efficientnetb0": "EfficientNetB0",
}
TRAINABLE_MODELS = ("shapes", "cifar10")  # convscope trains these itself
APPLICATION_MODELS = tuple(m for m in BUILTIN_MODELS if m not in TRAINABLE_MODELS)
