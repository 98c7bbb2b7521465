"""The class names of CIFAR-10 (``batches.meta``'s ``label_names``) and STL-10
(``class_names.txt``), in their label order: what the generated data writes and what the
readers fall back on. No torchvision import, so the generator stays light."""

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)
