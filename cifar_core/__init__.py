"""cifar_core: the engine of the VGG16 CIFAR-10 transfer-learning studio.

Modules, one job each (the README's "Files" section groups them):
  config, train_form, recipe, transfer   the settings (described once), the form, the recipes, the transfer experiment
  data, augment, image_limits, classes   the dataset, tf.data, augmentation, size checks of image files; class names of a model
  model, features, safe_h5, model_cost   VGG16 / VGG16-BN, the frozen-feature cache, checks of weights files, per-image cost
  train, callbacks, optimizer, ema, faults   one run's training; metrics, backups; optimizers; weight EMA; fault injection
  runs, liveness, launcher, run_progress, outcome, model_choice   the run store and what the dashboard shows of it
  evaluate, split_predictions, calibration, embeddings, similar, label_issues, duplicates, inspection   error analysis
  inference, previews                classifying and drawing user images
  explain, explainer, occlusion, gradcam, faithfulness   explanation maps (occlusion, Grad-CAM) and their deletion check
  export, tensorboard_log, publish  taking models and runs elsewhere
  atomic_io, errors, compat, paths  atomic writes; the error base; private-API uses; where files live
  plots, bench, similar_bench, ui_bench, distribute, start_weights, comparable, cli
"""

# CIFAR-10's classes, only where they truly are CIFAR-10's: Keras' download, the python-batches layout, and a
# model saved before class lists (classes.json). Every other class list comes from the data or the model.
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
