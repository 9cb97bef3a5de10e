// Linked with one layer's whole library and only the layers it lists (cmake/layers.txt): a
// symbol the layer takes from a layer above it is an undefined reference here.
int main() { return 0; }
