"""Model inputs and the data shipped with rtresnet: datasets for calibration and benchmarks, the bundled digits
model's data, and the ImageNet class and synset lists (the .txt files beside these modules)."""
