"""The built-in model ids, known without loading anything (the API lists them from here).
``tests/models`` checks this list against ``models.zoo.BUILTIN``."""

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
