require "set"

def unique_words(text)
  <CURSOR>
end
