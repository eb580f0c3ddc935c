"""asc_keras: low-complexity acoustic scene classification in Keras.

Reproduces the DCASE 2023 Task 1a system of Fei, Li & Jia (vivo): a SERFR-CNN
student distilled from an ensemble of three teachers, pruned and quantised to an
int8 TFLite model.  The package reads like the pipeline::

    data -> features -> augment -> models -> distill + training -> compress -> evaluate

Importing the package is cheap: TensorFlow is only imported by the stages that
need it (through :mod:`asc_keras._runtime`, which hides TensorFlow's start-up
noise unless ``ASC_KERAS_VERBOSE=1``).
"""

__version__ = "0.1.0"
