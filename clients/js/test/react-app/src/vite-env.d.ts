interface ImportMetaEnv {
  /** Where adw-broadcaster runs, e.g. http://127.0.0.1:8002 (set when building). */
  readonly VITE_BROADCASTER_URL: string
}
