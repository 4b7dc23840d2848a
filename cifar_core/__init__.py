"""cifar_core: the engine of the VGG16 CIFAR-10 transfer-learning studio.

Modules, one job each:
  config     TrainConfig, the validated settings shared by the CLI and the dashboard
  data       finding, decoding, caching and splitting CIFAR-10; the tf.data pipeline
  model      VGG16 / VGG16-BN bases, classifier heads, cut points, freezing
  features   the frozen-base feature cache used by the head phase
  callbacks  the Keras callback that streams metrics into the run store and obeys stop requests
  train      the two-phase (head, fine-tune) training of one run
  runs       the run store: SQLite index plus one folder per run
  launcher   starting a training as a background process, one at a time
  evaluate   Interpretation: probabilities, metrics, confusion matrix, top losses
  inference  classifying arbitrary user images
  bench      the speed benchmark
  cli        `python -m cifar_core`
"""

CLASS_NAMES: tuple[str, ...] = (
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
NUM_CLASSES = len(CLASS_NAMES)
