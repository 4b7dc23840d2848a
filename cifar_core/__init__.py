"""cifar_core: the engine of the VGG16 transfer-learning studio. The README's Architecture section is its map."""
