"""Image and text classification: preparing DATA and the card's body (prepare), fitting by strategy or
by measurement (fit), runs that train the body on the engine and their resume (body, task), and scoring a
run on labelled DATA (evaluate)."""
