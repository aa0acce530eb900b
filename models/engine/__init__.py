"""Remote engines as models: any OpenAI-compatible server (vLLM, SGLang, TGI, a hosted API) behind the `VideoLLM`
interface. `config` parses `--engine` entries, `allocate` turns a compressor into the frames each clip sends,
`payload` builds the request (vLLM's frame list or image parts), `client` streams answers with retries and reads
the reported token counts, `adapter` and `timeline` are the two kinds of model and `register` puts them in the
menu. No gradio here."""
