"""One page per step of the journey: Data, Select, Review, Export."""
